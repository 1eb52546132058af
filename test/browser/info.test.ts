/**
 * The Info page end to end, in Debian's Chromium: the built app (dist/) is
 * served from 127.0.0.1, images made by qemu-img are opened through the file
 * inputs, and what the page shows is checked against `qemu-img info
 * --output=json` on the same files. Also: the sample opens, a missing backing
 * file is asked for by name, and the page talks to no other origin and logs
 * no errors.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { AppBrowser, DIST, field, snap } from '../helpers/browser.ts';

type Json = { [key: string]: unknown };

const qemuImg = (cwd: string, ...args: string[]) => execFileSync('qemu-img', args, { cwd, encoding: 'utf8' });
const qemuIo = (cwd: string, ...args: string[]) => execFileSync('qemu-io', args, { cwd, encoding: 'utf8' });
const qemuInfo = (cwd: string, file: string): Json[] =>
  JSON.parse(qemuImg(cwd, 'info', '--output=json', '--backing-chain', file)) as Json[];

/** qemu-img's JSON without `actual-size`, which is host allocation in qemu-img and the file's length in a browser. */
const comparable = (chain: Json[]) => chain.map(({ 'actual-size': _, ...rest }) => rest);

let work: string;
let app: AppBrowser;

beforeAll(async () => {
  // An overlay with its own cluster size and a snapshot (then more writes, as a running guest
  // makes), on a base with data; the backing file is named relatively.
  work = mkdtempSync(path.join(tmpdir(), 'vdisk-browser-'));
  qemuImg(work, 'create', '-q', '-f', 'qcow2', 'base-disk.qcow2', '8M');
  qemuIo(work, '-f', 'qcow2', '-c', 'write -P 0xab 0 1M', 'base-disk.qcow2');
  qemuImg(work, 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=16384', '-b', 'base-disk.qcow2', '-F', 'qcow2', 'overlay.qcow2');
  qemuIo(work, '-f', 'qcow2', '-c', 'write -P 0xcd 2M 256k', 'overlay.qcow2');
  qemuImg(work, 'snapshot', '-c', 'before-upgrade', 'overlay.qcow2');
  qemuIo(work, '-f', 'qcow2', '-c', 'write -P 0xef 4M 64k', 'overlay.qcow2');
  app = await AppBrowser.start();
});

afterAll(async () => {
  await app?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const openApp = () => app.openApp();
/** The name shown at the head of the first pane. */
const paneTitle = (page: Page) => page.locator('[data-pane="0"] h2').first().textContent();

describe('Info page', () => {
  test('shows what qemu-img info says about an image and its backing file', async () => {
    const expected = qemuInfo(work, 'overlay.qcow2');
    const top = expected[0]!;
    const { context, page } = await openApp();
    try {
      await page.setInputFiles('input[name="image-files"]', [path.join(work, 'overlay.qcow2'), path.join(work, 'base-disk.qcow2')]);
      await field(page, 'virtual-size').waitFor();

      expect(await paneTitle(page)).toBe(top.filename);
      expect(await field(page, 'format').textContent()).toBe(top.format);
      expect(await field(page, 'virtual-size').textContent()).toContain(`(${top['virtual-size']} bytes)`);
      expect((await field(page, 'cluster-size').textContent())?.trim()).toMatch(new RegExp(`^${top['cluster-size']}\\b`));
      expect(await field(page, 'backing-filename').textContent()).toContain(String(top['backing-filename']));
      expect(await field(page, 'backing-filename-format').textContent()).toBe(top['backing-filename-format']);
      const snapshots = top.snapshots as Json[];
      expect(await page.locator('[data-field="snapshot-name"]').allTextContents()).toEqual(snapshots.map((s) => s.name));
      expect(await page.locator('.chain li').count()).toBe(expected.length);
      // The worker fetched and instantiated the WebAssembly kernels (served as application/wasm, allowed by the CSP).
      expect(await field(page, 'kernels').textContent()).toMatch(/WebAssembly/);

      // The JSON block is qemu-img's own output for the chain.
      await page.getByRole('button', { name: 'JSON', exact: true }).click();
      const shown = JSON.parse((await page.locator('pre[data-output="info-json"]').textContent())!) as Json[];
      expect(comparable(shown)).toEqual(comparable(expected));

      await snap(page, 'info');
    } finally {
      await context.close();
    }
  });

  test('asks for a backing file that was not picked, by its name, and opens the chain once given', async () => {
    const expected = qemuInfo(work, 'overlay.qcow2');
    const { context, page } = await openApp();
    try {
      await page.setInputFiles('input[name="image-files"]', [path.join(work, 'overlay.qcow2')]);
      const prompt = page.getByRole('alert');
      await prompt.waitFor();
      expect(await prompt.textContent()).toMatch(/This image’s backing file is\s+base-disk\.qcow2: pick it, or the folder that holds it/);
      expect(await field(page, 'missing-name').textContent()).toBe(expected[0]!['backing-filename']);
      // The image's own facts are still shown.
      expect(await field(page, 'virtual-size').textContent()).toContain(`(${expected[0]!['virtual-size']} bytes)`);
      await snap(page, 'info-missing');

      await page.setInputFiles('input[name="backing-files"]', [path.join(work, 'base-disk.qcow2')]);
      await expect.poll(() => page.locator('.chain button').count()).toBe(expected.length);
      expect(await page.getByRole('alert').count()).toBe(0);
    } finally {
      await context.close();
    }
  });

  test('the sample button opens the bundled sample', async () => {
    const expected = qemuInfo(path.join(DIST, 'samples'), 'demo.qcow2');
    const top = expected[0]!;
    const { context, page } = await openApp();
    try {
      await page.getByRole('button', { name: 'Try the sample image' }).click();
      await field(page, 'virtual-size').waitFor();
      expect(await paneTitle(page)).toBe('demo.qcow2');
      expect(await field(page, 'virtual-size').textContent()).toContain(`(${top['virtual-size']} bytes)`);
      expect(await field(page, 'backing-filename').textContent()).toContain(String(top['backing-filename']));
      expect(await page.locator('[data-field="snapshot-name"]').allTextContents()).toEqual((top.snapshots as Json[]).map((s) => s.name));
      expect(await page.locator('.chain button').count()).toBe(expected.length);
      await snap(page, 'info-sample');
    } finally {
      await context.close();
    }
  });

  test('opening an image while the Reports page shows leaves that page for the image', async () => {
    const { context, page } = await openApp();
    try {
      await page.getByRole('button', { name: 'Reports' }).click();
      await field(page, 'no-reports').waitFor();
      await page.setInputFiles('input[name="image-files"]', [path.join(work, 'overlay.qcow2'), path.join(work, 'base-disk.qcow2')]);
      await field(page, 'virtual-size').waitFor();
      expect(await paneTitle(page)).toBe('overlay.qcow2');
      expect(await field(page, 'no-reports').count()).toBe(0);
      expect(await page.getByRole('button', { name: 'Reports' }).getAttribute('aria-pressed')).toBe('false');
    } finally {
      await context.close();
    }
  });

  test('made no request beyond the local server and logged no errors', () => {
    expect(app.foreignRequests).toEqual([]);
    expect(app.errors).toEqual([]);
  });
});
