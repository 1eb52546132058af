/**
 * The Map, Check and Measure views in Debian's Chromium, against qemu-img on
 * the same files: the map's table and JSON are `qemu-img map --output=json`,
 * hovering the picture over a data range names that range; Check shows
 * qemu-img check's verdict, counts and findings for a clean image and for
 * damaged copies (a refcount raised, a refcount zeroed); Measure shows
 * `qemu-img measure --output=json` for the same image and options.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { AppBrowser, field, snap } from '../helpers/browser.ts';
import type { MapJsonEntry } from '../helpers/run.ts';

type Json = { [key: string]: unknown };

const MiB = 1024 * 1024;

let work: string;
let app: AppBrowser;

const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { cwd: work, encoding: 'utf8' });
const qemuIo = (file: string, ...cmds: string[]) => execFileSync('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), file], { cwd: work });
const filePath = (name: string) => path.join(work, name);

/** qemu-img check --output=json and its messages; it exits non-zero on a damaged image. */
function qemuCheck(name: string): { json: Json; stderr: string; status: number } {
  const r = spawnSync('qemu-img', ['check', '--output=json', name], { cwd: work, encoding: 'utf8' });
  return { json: JSON.parse(r.stdout) as Json, stderr: r.stderr, status: r.status ?? -1 };
}

/** Sets the 16-bit refcount of host cluster 0 (the header) in a copy of `from`. */
function withHeaderRefcount(from: string, to: string, refcount: number): void {
  copyFileSync(filePath(from), filePath(to));
  const fd = openSync(filePath(to), 'r+');
  try {
    const header = Buffer.alloc(104);
    readSync(fd, header, 0, header.length, 0);
    expect(header.readUInt32BE(96), 'refcount_order of the test image').toBe(4);
    const entry = Buffer.alloc(8);
    readSync(fd, entry, 0, 8, Number(header.readBigUInt64BE(48)));
    const block = Number(entry.readBigUInt64BE(0));
    const value = Buffer.alloc(2);
    value.writeUInt16BE(refcount);
    writeSync(fd, value, 0, 2, block);
  } finally {
    closeSync(fd);
  }
}

beforeAll(async () => {
  // A base with data, an overlay over it with data of its own, a zeroed range and a snapshot.
  work = mkdtempSync(path.join(tmpdir(), 'vdisk-browser-map-'));
  qemuImg('create', '-q', '-f', 'qcow2', 'base.qcow2', '64M');
  qemuIo('base.qcow2', 'write -P 0x11 8M 6M', 'write -P 0x12 40M 1M');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'disk.qcow2');
  qemuIo('disk.qcow2', 'write -P 0xaa 0 2M', 'write -P 0xbb 20M 12M', 'write -z 9M 1M');
  qemuImg('snapshot', '-c', 'first', 'disk.qcow2');
  withHeaderRefcount('disk.qcow2', 'leaky.qcow2', 2);
  withHeaderRefcount('disk.qcow2', 'corrupt.qcow2', 0);
  app = await AppBrowser.start();
});

afterAll(async () => {
  await app?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Opens the files in a fresh page and shows `view` for the first of them. */
async function openView(files: string[], view: string, options = {}): Promise<{ page: Page; close: () => Promise<void> }> {
  const { context, page } = await app.openApp(options);
  await page.setInputFiles('input[name="image-files"]', files.map(filePath));
  await field(page, 'virtual-size').waitFor();
  await page.getByRole('tab', { name: view, exact: true }).click();
  return { page, close: () => context.close() };
}

describe('Map view', () => {
  test('draws the map with a legend, lists qemu-img map as a table and names the range under the pointer', async () => {
    const expected = JSON.parse(qemuImg('map', '--output=json', 'disk.qcow2')) as MapJsonEntry[];
    const { page, close } = await openView(['disk.qcow2', 'base.qcow2'], 'Map');
    try {
      const canvas = field(page, 'map-canvas');
      await expect.poll(() => canvas.getAttribute('data-drawn'), { timeout: 15_000 }).toMatch(/^\d+$/);

      // The legend names each kind and each layer present, by file.
      const legend = field(page, 'map-legend');
      expect(await legend.locator('[data-kind]').count()).toBeGreaterThan(0);
      expect(await legend.locator('[data-kind="data"]').count()).toBe(1);
      expect(await legend.locator('[data-depth="0"]').textContent()).toContain('disk.qcow2');
      expect(await legend.locator('[data-depth="1"]').textContent()).toContain('base.qcow2');

      // Every range qemu-img map lists, as the table's rows.
      const rows = await page.locator('[data-field="map-row"]').evaluateAll((trs) =>
        trs.map((tr) => {
          const d = (tr as HTMLElement).dataset;
          const row: Record<string, unknown> = {
            start: Number(d.start),
            length: Number(d.length),
            depth: Number(d.depth),
            present: d.present === 'true',
            zero: d.zero === 'true',
            data: d.data === 'true',
          };
          if (d.offset !== undefined) row.offset = Number(d.offset);
          return row;
        }),
      );
      expect(rows).toEqual(expected);
      const firstOffset = await page.locator('[data-field="map-row"] td:first-child').first().textContent();
      expect(firstOffset?.trim()).toBe('0x' + expected[0]!.start.toString(16));

      // qemu-img map's own JSON.
      await page.locator('section:has([data-output^="map-"])').getByRole('button', { name: 'JSON', exact: true }).click();
      expect(JSON.parse((await page.locator('pre[data-output="map-json"]').textContent())!)).toEqual(expected);
      expect(await field(page, 'map-command').textContent()).toBe('$ qemu-img map --output=json disk.qcow2');

      // The pointer over the middle of a data range of the image itself names that range and its host offset.
      const target = expected.find((e) => e.data && !e.zero && e.depth === 0 && e.start > 0 && e.length >= MiB)!;
      expect(target, 'a data range in the test image').toBeDefined();
      const at = async (offset: number) => {
        const [cols, pitch, rowH, start, span, rowsN] = await canvas.evaluate((c) =>
          ['cols', 'rowPitch', 'rowHeight', 'start', 'span', 'rows'].map((k) => Number((c as HTMLElement).dataset[k])),
        );
        const cell = Math.floor(((offset - start!) / span!) * cols! * rowsN!);
        const box = (await canvas.boundingBox())!;
        return { x: box.x + (cell % cols!) + 0.5, y: box.y + Math.floor(cell / cols!) * pitch! + rowH! / 2 };
      };
      const p = await at(target.start + target.length / 2);
      await page.mouse.move(p.x, p.y);
      const tip = field(page, 'map-tooltip');
      await tip.waitFor();
      const text = (await tip.textContent())!;
      expect(text).toContain(`0x${target.start.toString(16)} – 0x${(target.start + target.length).toString(16)}`);
      expect(text).toContain(`host offset 0x${target.offset!.toString(16)}`);
      expect(text).toContain('disk.qcow2');
      await snap(page, 'map');

      // Choosing a row zooms the picture to its range; the keyboard zooms too.
      const spanOf = async () => Number(await canvas.getAttribute('data-span'));
      const whole = await spanOf();
      await page.locator('[data-field="map-row"]', { has: page.locator(`text="0x${target.start.toString(16)}"`) }).getByRole('button').click();
      expect(await spanOf()).toBeLessThan(whole);
      expect(Number(await canvas.getAttribute('data-start'))).toBeLessThanOrEqual(target.start);
      await page.getByRole('slider').focus();
      await page.keyboard.press('0');
      expect(await spanOf()).toBe(whole);
      await page.keyboard.press('+');
      expect(await spanOf()).toBe(whole / 2);
    } finally {
      await close();
    }
  });

  test('reads in the dark theme', async () => {
    const { page, close } = await openView(['disk.qcow2', 'base.qcow2'], 'Map', { colorScheme: 'dark' });
    try {
      await expect.poll(() => field(page, 'map-canvas').getAttribute('data-drawn'), { timeout: 15_000 }).toMatch(/^\d+$/);
      await snap(page, 'map-dark');
    } finally {
      await close();
    }
  });
});

describe('Check view', () => {
  for (const [name, verdict] of [
    ['disk.qcow2', 'clean'],
    ['leaky.qcow2', 'leaks'],
    ['corrupt.qcow2', 'corruptions'],
  ] as const) {
    test(`shows qemu-img check's verdict, counts and findings for ${name}`, async () => {
      const expected = qemuCheck(name);
      const { page, close } = await openView([name, 'base.qcow2'], 'Check');
      try {
        const shown = field(page, 'check-verdict');
        await shown.waitFor();
        expect(await shown.getAttribute('data-verdict')).toBe(verdict);
        expect(await field(page, 'check-exit-code').textContent()).toBe(String(expected.status));
        expect((await field(page, 'check-allocated-clusters').textContent())?.trim()).toMatch(new RegExp(`^${expected.json['allocated-clusters']} / ${expected.json['total-clusters']}\\b`));
        expect((await field(page, 'check-image-end-offset').textContent())?.trim()).toMatch(new RegExp(`^${expected.json['image-end-offset']}\\b`));
        if (expected.json.leaks) expect(await field(page, 'check-leaks').textContent()).toBe(String(expected.json.leaks));
        if (expected.json.corruptions) expect(await field(page, 'check-corruptions').textContent()).toBe(String(expected.json.corruptions));

        // Every finding qemu-img prints, in order; those about a cluster name its host offset.
        const findings = expected.stderr.split('\n').filter((l) => /^(ERROR|Leaked)/.test(l));
        expect(await page.locator('[data-field="check-finding"] td:nth-child(2)').allTextContents()).toEqual(findings);
        if (findings.length > 0) expect(await page.locator('[data-field="check-finding"] td:nth-child(3)').first().textContent()).toBe('0x0');

        await page.locator('section:has([data-output^="check-"])').getByRole('button', { name: 'JSON', exact: true }).click();
        expect(JSON.parse((await page.locator('pre[data-output="check-json"]').textContent())!)).toEqual(expected.json);
        await snap(page, `check-${verdict}`);
      } finally {
        await close();
      }
    });
  }

  test('Cancel stops a long check, says so with a way to run it again, and the next check completes', async () => {
    // Metadata preallocated over 256 GiB: 4 Mi clusters to count (about a second even for the CLI), 40 MiB on disk.
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', 'big.qcow2', '256G');
    try {
      const expected = qemuCheck('big.qcow2');
      const { page, close } = await openView(['big.qcow2'], 'Check');
      try {
        const task = page.getByRole('group', { name: 'Check of big.qcow2 progress' });
        // No byte count from a check: the bar is indeterminate (no value).
        expect(await task.locator('progress').getAttribute('value')).toBeNull();
        await task.getByRole('button', { name: 'Cancel' }).click();
        await field(page, 'stopped').waitFor();
        expect(await field(page, 'check-verdict').count()).toBe(0);
        await expect.poll(() => page.locator('p.status').textContent()).toBe('Check of big.qcow2 was cancelled.');
        await snap(page, 'check-cancelled');

        await page.getByRole('button', { name: 'Check again' }).click();
        await field(page, 'check-verdict').waitFor({ timeout: 20_000 });
        expect(await field(page, 'check-exit-code').textContent()).toBe(String(expected.status));
        expect((await field(page, 'check-allocated-clusters').textContent())?.trim()).toMatch(new RegExp(`^${expected.json['allocated-clusters']} / `));
        expect(await field(page, 'stopped').count()).toBe(0);
      } finally {
        await close();
      }
    } finally {
      rmSync(filePath('big.qcow2'));
    }
  });
});

describe('Measure view', () => {
  test('shows qemu-img measure for the image and for a size, with the options given', async () => {
    const expected = JSON.parse(qemuImg('measure', '--output=json', '-O', 'qcow2', '-o', 'cluster_size=16k', 'disk.qcow2')) as Json;
    const bySize = JSON.parse(qemuImg('measure', '--output=json', '-O', 'qcow2', '-o', 'cluster_size=16k', '--size', '10G')) as Json;
    const { page, close } = await openView(['disk.qcow2', 'base.qcow2'], 'Measure');
    try {
      await page.getByLabel(/^Cluster size/).selectOption('16k');
      const command = '$ qemu-img measure --output=json -O qcow2 -o cluster_size=16k disk.qcow2';
      await page.locator('section:has([data-output^="measure-"])').getByRole('button', { name: 'JSON', exact: true }).click();
      await expect.poll(() => field(page, 'measure-command').textContent()).toBe(command);
      expect(JSON.parse((await page.locator('pre[data-output="measure-json"]').textContent())!)).toEqual(expected);
      expect(await field(page, 'measure-required').textContent()).toBe(String(expected.required));
      expect(await field(page, 'measure-fully-allocated').textContent()).toBe(String(expected['fully-allocated']));
      await snap(page, 'measure');

      await page.getByLabel('A new, empty disk of size').check();
      await page.getByLabel('Disk size (--size)').fill('10G');
      await expect.poll(() => field(page, 'measure-command').textContent()).toBe('$ qemu-img measure --output=json -O qcow2 -o cluster_size=16k --size 10G');
      expect(JSON.parse((await page.locator('pre[data-output="measure-json"]').textContent())!)).toEqual(bySize);

      // An option qemu-img refuses is refused here too, with the engine's reason.
      await page.getByLabel(/^Other options/).fill('cluster_size=3000');
      await expect.poll(() => field(page, 'measure-error').count()).toBe(1);
    } finally {
      await close();
    }
  });
});

test('made no request beyond the local server and logged no errors', () => {
  expect(app.foreignRequests).toEqual([]);
  expect(app.errors).toEqual([]);
});
