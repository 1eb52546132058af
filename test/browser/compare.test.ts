/**
 * The Compare view and reports end to end, in Debian's Chromium. Two images
 * made by qemu-img and qemu-io differ at known places; what the page shows is
 * checked against `qemu-img compare` (verdict, first difference, exit code),
 * `vdisk compare --all --output=json` (every range and its hashes) and
 * `qemu-io read -v` (the bytes in the hex view) on the same files. Then the
 * report: the JSON export, the self-contained HTML export, the share link
 * opened in a fresh page, and a saved report listed after a reload.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { AppBrowser, field, snap } from '../helpers/browser.ts';
import { describeRun, vdisk } from '../helpers/run.ts';

type Json = { [key: string]: unknown };

const qemuImg = (cwd: string, ...args: string[]) => execFileSync('qemu-img', args, { cwd, encoding: 'utf8' });
const qemuIo = (cwd: string, ...args: string[]) => execFileSync('qemu-io', args, { cwd, encoding: 'utf8' });

/** qemu-img compare's output and exit code. */
function qemuCompare(cwd: string, a: string, b: string): { stdout: string; status: number | null } {
  const r = spawnSync('qemu-img', ['compare', a, b], { cwd, encoding: 'utf8' });
  return { stdout: r.stdout.trim(), status: r.status };
}

/** Guest bytes as qemu-io reads them (`read -v` prints a hex dump). */
function qemuBytes(cwd: string, file: string, offset: number, length: number): number[] {
  const dump = qemuIo(cwd, '-r', '-f', 'qcow2', '-c', `read -v ${offset} ${length}`, file);
  return dump
    .split('\n')
    .filter((l) => /^[0-9a-f]{8}:/.test(l))
    .flatMap((l) => l.slice(10, 10 + 16 * 3).trim().split(/\s+/).map((h) => parseInt(h, 16)));
}

let work: string;
let app: AppBrowser;

beforeAll(async () => {
  // b.qcow2 is a.qcow2 with a changed 4 KiB inside the first MiB, a changed sector inside the
  // second written area, and data where a.qcow2 has none. a.raw is a.qcow2's contents; c.qcow2 is
  // a.qcow2 grown by zeros; orphan.qcow2 names a backing file that is not there.
  work = mkdtempSync(path.join(tmpdir(), 'vdisk-browser-compare-'));
  for (const f of ['a.qcow2', 'b.qcow2']) {
    qemuImg(work, 'create', '-q', '-f', 'qcow2', f, '8M');
    qemuIo(work, '-f', 'qcow2', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 3M 64k', f);
  }
  qemuIo(work, '-f', 'qcow2', '-c', 'write -P 0x5a 512k 4k', '-c', 'write -P 0x7e 3148800 512', '-c', 'write -P 0x33 5M 1536', 'b.qcow2');
  qemuImg(work, 'convert', '-O', 'raw', 'a.qcow2', 'a.raw');
  qemuImg(work, 'convert', '-O', 'qcow2', 'a.qcow2', 'c.qcow2');
  qemuImg(work, 'resize', '-q', 'c.qcow2', '12M');
  qemuImg(work, 'create', '-q', '-f', 'qcow2', '-u', '-b', 'gone.qcow2', '-F', 'qcow2', 'orphan.qcow2', '8M');
  app = await AppBrowser.start();
});

afterAll(async () => {
  await app?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const files = (...names: string[]) => names.map((n) => path.join(work, n));

/** Opens the files (the first is shown), goes to the Compare tab and compares with `other`. */
async function compareIn(page: Page, other: string): Promise<void> {
  await page.getByRole('tab', { name: 'Compare' }).first().click();
  await page.locator('select[name="compare-with"]').selectOption(other);
  const before = await page.locator('[data-field="verdict"]').count();
  await page.getByRole('button', { name: 'Compare', exact: true }).click();
  if (before > 0) await expect.poll(() => page.locator('[data-field="compare-command"]').textContent()).toContain(other);
  await field(page, 'verdict').waitFor();
}

async function download(page: Page, button: string): Promise<string> {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: button }).click()]);
  return readFileSync((await dl.path())!, 'utf8');
}

describe('Compare view', () => {
  test('shows qemu-img compare’s verdict, every range of vdisk compare --all, and the differing bytes; exports, shares and saves the report', async () => {
    const expected = qemuCompare(work, 'a.qcow2', 'b.qcow2');
    const first = Number(/Content mismatch at offset (\d+)!/.exec(expected.stdout)![1]);
    const cli = vdisk(['compare', '--all', '--output=json', 'a.qcow2', 'b.qcow2'], { cwd: work });
    expect(cli.status, describeRun('vdisk compare', cli)).toBe(1);
    const all = JSON.parse(cli.stdout) as { ranges: { start: number; length: number; 'hash-a': string; 'hash-b': string }[] } & Json;
    expect(all.ranges.length).toBeGreaterThan(1);
    const bytesA = qemuBytes(work, 'a.qcow2', first, 16);
    const bytesB = qemuBytes(work, 'b.qcow2', first, 16);

    const { context, page } = await app.openApp();
    try {
      await page.setInputFiles('input[name="image-files"]', files('a.qcow2', 'b.qcow2'));
      await field(page, 'virtual-size').waitFor();
      await compareIn(page, 'b.qcow2');

      // qemu-img's verdict, in its words, and its exit code.
      expect(await field(page, 'verdict').getAttribute('data-verdict')).toBe('differ');
      expect(await field(page, 'qemu-messages').textContent()).toBe(expected.stdout);
      expect(Number(await field(page, 'first-difference').textContent())).toBe(first);
      expect(await field(page, 'compare-command').textContent()).toBe('$ qemu-img compare a.qcow2 b.qcow2');
      expect(Number(await field(page, 'exit-code').textContent())).toBe(expected.status);

      // Every range, with both hashes, as vdisk compare --all prints them.
      const rows = page.locator('tr[data-range]');
      expect(await rows.count()).toBe(all.ranges.length);
      const shown = await rows.evaluateAll((trs) =>
        trs.map((tr) => ({
          start: Number(tr.getAttribute('data-start')),
          length: Number(tr.getAttribute('data-length')),
          'hash-a': tr.querySelector('[data-field="hash-a"]')!.textContent,
          'hash-b': tr.querySelector('[data-field="hash-b"]')!.textContent,
        })),
      );
      expect(shown).toEqual(all.ranges);
      expect(await page.locator('[data-field="diff-strip"] rect.diff').count()).toBeGreaterThan(0);

      // The hex view opens at the first difference, with qemu-io's bytes of each side, highlighted.
      expect(Number(await field(page, 'hex-offset').textContent())).toBe(first);
      for (const [side, bytes] of [['a', bytesA], ['b', bytesB]] as const) {
        const cells = page.locator(`[data-side="${side}"][data-offset]`);
        const at = await cells.evaluateAll(
          (spans, from) => spans.filter((s) => Number(s.getAttribute('data-offset')) >= from).slice(0, 16).map((s) => parseInt(s.textContent!, 16)),
          first,
        );
        expect(at).toEqual(bytes);
      }
      expect(await page.locator(`[data-side="a"][data-offset="${first}"]`).getAttribute('class')).toMatch(/\bdiff\b/);

      // Hovering the strip names a range; Next range moves the hex view to it.
      const mark = page.locator('[data-field="diff-strip"] rect.diff').first();
      await mark.hover({ force: true });
      await expect.poll(() => page.locator('.tip').textContent()).toMatch(/offset \d+ to \d+/);
      await page.getByRole('button', { name: 'Next range →' }).click();
      expect(Number(await field(page, 'hex-offset').textContent())).toBe(all.ranges[1]!.start);
      await page.getByRole('button', { name: '← Previous range' }).click();
      await snap(page, 'compare');

      // The JSON export is the comparison, as vdisk prints it, with its images and verdict.
      const json = JSON.parse(await download(page, 'Export JSON')) as Json;
      expect(json.kind).toBe('compare');
      expect(json.result).toEqual(all);
      expect(json.command).toBe('qemu-img compare a.qcow2 b.qcow2');
      expect(json.exitCode).toBe(expected.status);

      // The HTML export stands alone: no scripts, nothing to fetch, and it renders offline.
      const html = await download(page, 'Export HTML');
      expect(html).not.toMatch(/<script|\bsrc=|\bhref=|url\(/i);
      expect(html).toContain(expected.stdout);
      for (const r of all.ranges) expect(html).toContain(`<td class="num">${r.start}</td>`);
      const htmlContext = await app.browser.newContext({ viewport: { width: 1280, height: 800 } });
      const requests: string[] = [];
      htmlContext.on('request', (r) => requests.push(r.url()));
      const htmlPage = await htmlContext.newPage();
      app.watch(htmlPage);
      await htmlPage.setContent(html);
      expect(await htmlPage.locator('svg rect').count()).toBeGreaterThan(1);
      await snap(htmlPage, 'compare-report-html');
      await htmlContext.close();
      expect(requests).toEqual([]);

      // The share link carries the report: a fresh page shows it without the images.
      await page.getByRole('button', { name: 'Share link' }).click();
      const link = new URL(await field(page, 'share-link').inputValue());
      expect(link.origin).toBe(app.server.origin);
      expect(link.hash).toMatch(/^#report=[\w-]+$/);
      const fresh = await app.openApp({}, link.pathname + link.search + link.hash);
      try {
        await field(fresh.page, 'report-heading').waitFor();
        expect(await field(fresh.page, 'report-heading').textContent()).toBe('Compare a.qcow2 with b.qcow2');
        expect(await field(fresh.page, 'qemu-messages').textContent()).toBe(expected.stdout);
        expect(Number(await field(fresh.page, 'first-difference').textContent())).toBe(first);
        expect(await fresh.page.locator('tr[data-range]').evaluateAll((trs) => trs.map((tr) => Number(tr.getAttribute('data-start'))))).toEqual(
          all.ranges.map((r) => r.start),
        );
        await snap(fresh.page, 'report-from-link');
      } finally {
        await fresh.context.close();
      }

      // A saved report is listed after a reload, and opens.
      await page.getByRole('button', { name: 'Save report' }).click();
      await page.getByRole('button', { name: 'Saved', exact: true }).waitFor();
      await page.reload();
      await page.getByRole('button', { name: 'Reports', exact: true }).click();
      await expect.poll(() => page.locator('[data-field="report-title"]').allTextContents()).toContain('Compare a.qcow2 with b.qcow2');
      await snap(page, 'reports-list');
      await page.locator('[data-field="report-title"]', { hasText: 'Compare a.qcow2 with b.qcow2' }).first().click();
      expect(await field(page, 'qemu-messages').textContent()).toBe(expected.stdout);
    } finally {
      await context.close();
    }
  });

  test('identical images, images whose sizes differ by zeros, and an image that cannot open get qemu-img’s verdicts and exit codes', async () => {
    const same = qemuCompare(work, 'a.qcow2', 'a.raw');
    const grown = qemuCompare(work, 'a.qcow2', 'c.qcow2');
    const orphan = qemuCompare(work, 'a.qcow2', 'orphan.qcow2');
    expect(orphan.status).toBe(2);
    expect(same.status).toBe(0);
    expect(grown.stdout).toMatch(/size mismatch/);

    const { context, page } = await app.openApp({ colorScheme: 'dark' });
    try {
      await page.setInputFiles('input[name="image-files"]', files('a.qcow2', 'a.raw', 'c.qcow2', 'orphan.qcow2'));
      await field(page, 'virtual-size').waitFor();

      await compareIn(page, 'a.raw');
      expect(await field(page, 'verdict').getAttribute('data-verdict')).toBe('identical');
      expect(await field(page, 'qemu-messages').textContent()).toBe(same.stdout);
      expect(Number(await field(page, 'exit-code').textContent())).toBe(same.status);
      expect(await page.locator('tr[data-range]').count()).toBe(0);

      await compareIn(page, 'c.qcow2');
      expect(await field(page, 'verdict').getAttribute('data-verdict')).toBe('identical-size');
      expect(await field(page, 'qemu-messages').textContent()).toBe(grown.stdout);
      expect(Number(await field(page, 'exit-code').textContent())).toBe(grown.status);
      await snap(page, 'compare-size-dark');

      await compareIn(page, 'orphan.qcow2');
      expect(await field(page, 'verdict').getAttribute('data-verdict')).toBe('error');
      expect(Number(await field(page, 'exit-code').textContent())).toBe(orphan.status);
      expect(await field(page, 'qemu-messages').textContent()).toContain('gone.qcow2');
    } finally {
      await context.close();
    }
  });

  test('the Info view exports qemu-img info’s JSON as a report, and shares it as a link', async () => {
    const expected = JSON.parse(qemuImg(work, 'info', '--output=json', '--backing-chain', 'a.qcow2')) as Json[];
    const { context, page } = await app.openApp();
    try {
      await page.setInputFiles('input[name="image-files"]', files('a.qcow2'));
      await field(page, 'virtual-size').waitFor();
      const doc = JSON.parse(await download(page, 'Export JSON')) as { kind: string; json: Json[] };
      expect(doc.kind).toBe('info');
      // actual-size is host allocation in qemu-img and the file's length in a browser.
      const comparable = (chain: Json[]) => chain.map(({ 'actual-size': _, ...rest }) => rest);
      expect(comparable(doc.json)).toEqual(comparable(expected));

      // Its share link shows qemu-img info's output in a fresh page, without the image.
      await page.getByRole('button', { name: 'Share link' }).click();
      const link = new URL(await field(page, 'share-link').inputValue());
      const fresh = await app.openApp({}, link.pathname + link.hash);
      try {
        await field(fresh.page, 'report-heading').waitFor();
        const sizeLine = qemuImg(work, 'info', 'a.qcow2').split('\n').find((l) => l.startsWith('virtual size:'))!;
        expect(await fresh.page.locator('pre[data-output="report-info-human"]').textContent()).toContain(sizeLine);
        await fresh.page.getByRole('button', { name: 'JSON', exact: true }).click();
        const shown = JSON.parse((await fresh.page.locator('pre[data-output="report-info-json"]').textContent())!) as Json[];
        expect(comparable(shown)).toEqual(comparable(expected));
      } finally {
        await fresh.context.close();
      }
    } finally {
      await context.close();
    }
  });

  test('made no request beyond the local server and logged no errors', () => {
    expect(app.foreignRequests).toEqual([]);
    expect(app.errors).toEqual([]);
  });
});
