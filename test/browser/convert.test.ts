/**
 * Convert and Sparsify in the page, end to end in Debian's Chromium. Headless
 * Chromium's save picker cannot be driven, so it is removed and the page
 * takes its other path: the worker writes an OPFS temporary and the page
 * downloads it. Each download is checked with `qemu-img compare` against the
 * source and `qemu-img check`; the size estimate against `qemu-img measure`.
 * Cancel mid-way must leave no download and no OPFS temporary. The browser's
 * compression codec is also checked on its own: what it packs inflates with
 * the engine's inflater and within qemu's 4 KiB window.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { inflateRawSync, inflateSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { BrowserContext, BrowserContextOptions, Page } from 'playwright-core';
import { AppBrowser, field, snap } from '../helpers/browser.ts';
import { describeRun, vdisk } from '../helpers/run.ts';
import { compressUnit } from '../../web/worker/compress-codec.ts';
import { inflateRawInto } from '../../engine/codecs/deflate.ts';

const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { cwd: work, encoding: 'utf8' });
const qemuIo = (...args: string[]) => execFileSync('qemu-io', args, { cwd: work, encoding: 'utf8' });

/** qemu-img compare's exit status and output (0: identical). */
function compare(a: string, b: string): { status: number | null; out: string } {
  const r = spawnSync('qemu-img', ['compare', a, b], { cwd: work, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

function checkClean(file: string): void {
  const r = spawnSync('qemu-img', ['check', '--output=json', file], { cwd: work, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const report = JSON.parse(r.stdout) as Record<string, unknown>;
  expect(report['check-errors']).toBe(0);
  expect(report.leaks ?? 0).toBe(0);
  expect(report.corruptions ?? 0).toBe(0);
}

let work: string;
let app: AppBrowser;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'vdisk-convert-'));
  // A qcow2 over a backing file, with a snapshot; the chain is what convert flattens.
  qemuImg('create', '-q', '-f', 'qcow2', 'base.qcow2', '8M');
  qemuIo('-f', 'qcow2', '-c', 'write -P 0xab 0 1M', '-c', 'write -P 0x3c 5M 512k', 'base.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=16384', '-b', 'base.qcow2', '-F', 'qcow2', 'overlay.qcow2');
  qemuIo('-f', 'qcow2', '-c', 'write -P 0xcd 2M 256k', '-c', 'write -z 5M 64k', 'overlay.qcow2');
  qemuImg('snapshot', '-c', 'first', 'overlay.qcow2');
  qemuIo('-f', 'qcow2', '-c', 'write -P 0xef 6M 64k', 'overlay.qcow2');
  // A raw disk whose middle is zeros written out as data.
  qemuImg('create', '-q', '-f', 'raw', 'zeros.raw', '16M');
  qemuIo('-f', 'raw', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0 1M 12M', '-c', 'write -P 0x22 13M 1M', 'zeros.raw');
  // A larger sparse disk with incompressible data every 16 MiB, so a compressed conversion runs long enough to cancel.
  const fd = openSync(path.join(work, 'big.raw'), 'w');
  for (let at = 0; at < 512; at += 16) writeSync(fd, randomBytes(1 << 20), 0, 1 << 20, at * (1 << 20));
  closeSync(fd);
  execFileSync('truncate', ['-s', '512M', path.join(work, 'big.raw')]);
  app = await AppBrowser.start();
});

afterAll(async () => {
  await app?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/**
 * A page on the app whose window is changed by `init` before the app loads
 * (as AppBrowser.openApp, with the same watch on requests and errors).
 */
async function appWith(init: () => void, options: BrowserContextOptions = {}): Promise<{ context: BrowserContext; page: Page }> {
  const context = await app.browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  context.on('request', (r) => {
    const url = new URL(r.url());
    if (url.origin !== app.server.origin && url.protocol !== 'blob:' && url.protocol !== 'data:') app.foreignRequests.push(r.url());
  });
  await context.addInitScript(init);
  const page = await context.newPage();
  app.watch(page);
  await page.goto(app.server.origin + '/');
  await expect.poll(() => page.locator('[data-field="kernels"]').textContent(), { timeout: 15_000 }).toMatch(/Kernels: /);
  return { context, page };
}

/** Shows `path` (one of the picked files) on its `tab`. */
async function showOn(page: Page, path: string, tab: 'Convert' | 'Sparsify'): Promise<void> {
  await page.locator('.images').getByText(path, { exact: true }).first().click();
  await expect.poll(() => page.locator('[data-pane="0"] h2').first().textContent()).toBe(path);
  await page.getByRole('tab', { name: tab }).click();
}

/** A page without showSaveFilePicker (as in Firefox, and as headless Chromium must be driven), on `tab` of `files[0]`. */
async function openOn(files: string[], tab: 'Convert' | 'Sparsify', options: BrowserContextOptions = {}): Promise<{ context: BrowserContext; page: Page }> {
  const opened = await appWith(() => {
    delete (window as { showSaveFilePicker?: unknown }).showSaveFilePicker;
  }, options);
  await opened.page.setInputFiles('input[name="image-files"]', files.map((f) => path.join(work, f)));
  await field(opened.page, 'virtual-size').waitFor();
  await showOn(opened.page, files[0]!, tab);
  return opened;
}

interface Target {
  format: string;
  options?: Record<string, string>;
  compress?: boolean;
}

async function setTarget(page: Page, t: Target): Promise<void> {
  await page.selectOption('select[name="format"]', t.format);
  for (const [k, v] of Object.entries(t.options ?? {})) await page.selectOption(`select[name="opt-${k}"]`, v);
  if (t.compress !== undefined) await page.setChecked('input[name="compress"]', t.compress);
}

/** Starts the conversion shown, and saves the download it ends with as `out` in the work folder. */
async function runAndSave(page: Page, out: string, verb = 'Convert'): Promise<string> {
  await page.fill('input[name="output-name"]', out);
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.getByRole('button', { name: `${verb}…` }).click()]);
  expect(download.suggestedFilename()).toBe(out);
  const saved = path.join(work, out);
  await download.saveAs(saved);
  await field(page, 'saved-name').waitFor();
  return saved;
}

const opfsNames = (page: Page) =>
  page.evaluate(async () => {
    const dir = await navigator.storage.getDirectory();
    const names: string[] = [];
    for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(name);
    return names;
  });

describe('Convert view', () => {
  test('converts a qcow2 with a backing file to raw, qcow2, -c qcow2 and streamOptimized vmdk, each identical to the source', async () => {
    const { context, page } = await openOn(['overlay.qcow2', 'base.qcow2'], 'Convert');
    try {
      for (const [out, target] of [
        ['flat.img', { format: 'raw' }],
        ['flat.qcow2', { format: 'qcow2', options: { cluster_size: '64k' } }],
        ['packed.qcow2', { format: 'qcow2', compress: true }],
        ['stream.vmdk', { format: 'vmdk', options: { subformat: 'streamOptimized' } }],
      ] as [string, Target][]) {
        await setTarget(page, target);
        const saved = await runAndSave(page, out);
        const c = compare('overlay.qcow2', saved);
        expect(c.status, `${out}: ${c.out}`).toBe(0);
        expect(c.out).toMatch(/Images are identical/);
        if (target.format === 'qcow2') checkClean(saved);
        expect(await field(page, 'bytes-after').textContent()).toContain(`(${statSync(saved).size} bytes)`);
      }
      // The -c output is really compressed, and the engine's own reader (through its inflater) agrees with qemu-img.
      const check = JSON.parse(qemuImg('check', '--output=json', 'packed.qcow2')) as { 'compressed-clusters': number; 'allocated-clusters': number };
      expect(check['compressed-clusters']).toBe(check['allocated-clusters']);
      expect(check['compressed-clusters']).toBeGreaterThan(0);
      const own = vdisk(['compare', 'overlay.qcow2', 'packed.qcow2'], { cwd: work });
      expect(own.status, describeRun('vdisk compare', own)).toBe(0);
      expect(await field(page, 'command').textContent()).toBe('qemu-img convert -p -f qcow2 -O vmdk -o subformat=streamOptimized overlay.qcow2 stream.vmdk');
      await page.evaluate(() => window.scrollTo(0, 0));
      await snap(page, 'convert');
    } finally {
      await context.close();
    }
  });

  test('the size estimate is what qemu-img measure says, and a snapshot converts to what it held', async () => {
    const { context, page } = await openOn(['overlay.qcow2', 'base.qcow2'], 'Convert');
    try {
      for (const [format, opts] of [
        ['qcow2', ['cluster_size', '16k']],
        ['raw', undefined],
      ] as [string, [string, string] | undefined][]) {
        await setTarget(page, { format, options: opts ? { [opts[0]]: opts[1] } : {} });
        const args = ['measure', '--output=json', '-O', format, ...(opts ? ['-o', `${opts[0]}=${opts[1]}`] : []), 'overlay.qcow2'];
        const expected = JSON.parse(qemuImg(...args)) as { required: number };
        await expect.poll(() => field(page, 'estimate').textContent()).toContain(`(${expected.required} bytes)`);
      }
      await page.selectOption('select[name="snapshot"]', { label: 'snapshot 1: first' });
      qemuImg('convert', '-O', 'raw', '-l', 'snapshot.name=first', 'overlay.qcow2', 'first-by-qemu.img');
      const saved = await runAndSave(page, 'first.img');
      expect(compare('first-by-qemu.img', saved).status).toBe(0);
      // The snapshot differs from the image now (6M was written after it), so the choice mattered.
      expect(compare('overlay.qcow2', saved).status).toBe(1);
    } finally {
      await context.close();
    }
  });

  test('Cancel mid-way leaves no download and no OPFS temporary, and the next conversion works', async () => {
    const { context, page } = await openOn(['big.raw', 'zeros.raw'], 'Convert');
    const downloads: string[] = [];
    page.on('download', (d) => downloads.push(d.suggestedFilename()));
    try {
      await setTarget(page, { format: 'qcow2', compress: true });
      await page.fill('input[name="output-name"]', 'big.qcow2');
      await page.getByRole('button', { name: 'Convert…' }).click();
      const cancel = page.getByRole('button', { name: 'Cancel' });
      await cancel.waitFor();
      await expect.poll(() => opfsNames(page)).toEqual([expect.stringMatching(/^vdisk-save-/)]);
      await snap(page, 'convert-progress');
      await cancel.click();
      await expect.poll(() => page.getByRole('status').textContent()).toMatch(/cancelled/);
      await expect.poll(() => opfsNames(page), { timeout: 10_000 }).toEqual([]);

      await showOn(page, 'zeros.raw', 'Convert');
      await setTarget(page, { format: 'vpc' });
      const saved = await runAndSave(page, 'zeros.vhd');
      expect(compare('zeros.raw', saved).status).toBe(0);
      expect(downloads).toEqual(['zeros.vhd']);
    } finally {
      await context.close();
    }
  });
});

describe('save picker', () => {
  test('writes through the picked file as it converts, and a cancelled save leaves nothing under the picked name', async () => {
    // The picker hands out OPFS files, which have the same handle and writable stream as files on disk.
    const { context, page } = await appWith(() => {
      let n = 0;
      (window as { showSaveFilePicker?: unknown }).showSaveFilePicker = async (opts: { suggestedName: string }) =>
        (await navigator.storage.getDirectory()).getFileHandle(`picked-${n++}-${opts.suggestedName}`, { create: true });
    });
    const downloads: string[] = [];
    page.on('download', (d) => downloads.push(d.suggestedFilename()));
    try {
      await page.setInputFiles('input[name="image-files"]', [path.join(work, 'overlay.qcow2'), path.join(work, 'base.qcow2'), path.join(work, 'big.raw')]);
      await field(page, 'virtual-size').waitFor();
      await showOn(page, 'overlay.qcow2', 'Convert');
      await setTarget(page, { format: 'qcow2', compress: true });
      await page.fill('input[name="output-name"]', 'picked.qcow2');
      await page.getByRole('button', { name: 'Convert…' }).click();
      await expect.poll(() => field(page, 'saved-name').textContent()).toBe('picked-0-picked.qcow2');
      const bytes = await page.evaluate(async () => {
        const file = await (await (await navigator.storage.getDirectory()).getFileHandle('picked-0-picked.qcow2')).getFile();
        const b = new Uint8Array(await file.arrayBuffer());
        let s = '';
        for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
        return btoa(s);
      });
      const saved = path.join(work, 'picked.qcow2');
      writeFileSync(saved, Buffer.from(bytes, 'base64'));
      expect(compare('overlay.qcow2', saved).status).toBe(0);
      checkClean(saved);

      await showOn(page, 'big.raw', 'Convert');
      await setTarget(page, { format: 'qcow2', compress: true });
      await page.getByRole('button', { name: 'Convert…' }).click();
      await page.getByRole('button', { name: 'Cancel' }).click();
      await expect.poll(() => page.getByRole('status').textContent()).toMatch(/cancelled/);
      await expect.poll(() => opfsNames(page), { timeout: 10_000 }).toEqual(['picked-0-picked.qcow2']);
      expect(downloads).toEqual([]);
    } finally {
      await context.close();
    }
  });
});

describe('Sparsify view', () => {
  test('keeps the format unless changed, and a raw with written zeros becomes a smaller file with the same contents', async () => {
    const { context, page } = await openOn(['zeros.raw'], 'Sparsify', { colorScheme: 'dark' });
    try {
      expect(await page.locator('select[name="format"]').inputValue()).toBe('raw');
      await field(page, 'raw-note').waitFor();
      await page.selectOption('select[name="format"]', 'qcow2');
      const saved = await runAndSave(page, 'zeros-sparse.qcow2', 'Sparsify');
      expect(compare('zeros.raw', saved).status).toBe(0);
      checkClean(saved);
      const before = statSync(path.join(work, 'zeros.raw')).size;
      const after = statSync(saved).size;
      expect(after).toBeLessThan(before / 4);
      expect(await field(page, 'bytes-before').textContent()).toContain(`(${before} bytes)`);
      expect(await field(page, 'bytes-after').textContent()).toContain(`(${after} bytes)`);
      await page.evaluate(() => window.scrollTo(0, 0));
      await snap(page, 'sparsify-dark');
    } finally {
      await context.close();
    }
  });
});

describe('browser compression codec', () => {
  test('packs qcow2 clusters within a 4 KiB window and VMDK grains as zlib, both inflating to the input', () => {
    const text = Buffer.from(Array.from({ length: 9000 }, (_, i) => `line ${i % 97} of a guest file\n`).join('')).subarray(0, 65536);
    const unit = new Uint8Array(65536);
    unit.set(text);
    const raw = compressUnit(unit, 'deflate-raw-4k');
    expect(raw.length).toBeLessThan(unit.length / 4);
    const out = new Uint8Array(unit.length);
    inflateRawInto(raw, out);
    expect(Buffer.from(out).equals(Buffer.from(unit))).toBe(true);
    // qemu inflates with windowBits -12: a match reaching further back would fail here.
    expect(Buffer.from(inflateRawSync(raw, { windowBits: 12 })).equals(Buffer.from(unit))).toBe(true);
    expect(Buffer.from(inflateSync(compressUnit(unit, 'zlib'))).equals(Buffer.from(unit))).toBe(true);
    expect(Buffer.from(compressUnit(unit, 'deflate-raw-4k')).equals(Buffer.from(raw))).toBe(true);
  });
});

test('made no request beyond the local server and logged no errors', () => {
  expect(app.foreignRequests).toEqual([]);
  expect(app.errors).toEqual([]);
});
