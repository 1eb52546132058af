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
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

const DIST = path.resolve('dist');
const CHROMIUM = '/usr/bin/chromium';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.md': 'text/markdown; charset=utf-8',
};

/** A static server for dist/, as any plain host would serve it. */
function serve(root: string): Promise<Server> {
  const server = createServer(async (req, res) => {
    let rel = decodeURIComponent(new URL(req.url ?? '/', 'http://host').pathname);
    if (rel.endsWith('/')) rel += 'index.html';
    const file = path.resolve(root, '.' + rel);
    if (!file.startsWith(root + path.sep)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': MIME[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
      res.end(body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

type Json = { [key: string]: unknown };

const qemuImg = (cwd: string, ...args: string[]) => execFileSync('qemu-img', args, { cwd, encoding: 'utf8' });
const qemuIo = (cwd: string, ...args: string[]) => execFileSync('qemu-io', args, { cwd, encoding: 'utf8' });
const qemuInfo = (cwd: string, file: string): Json[] =>
  JSON.parse(qemuImg(cwd, 'info', '--output=json', '--backing-chain', file)) as Json[];

/** qemu-img's JSON without `actual-size`, which is host allocation in qemu-img and the file's length in a browser. */
const comparable = (chain: Json[]) => chain.map(({ 'actual-size': _, ...rest }) => rest);

let work: string;
let server: Server;
let origin: string;
let browser: Browser;
const foreignRequests: string[] = [];
const errors: string[] = [];

beforeAll(async () => {
  if (!existsSync(path.join(DIST, 'index.html'))) throw new Error('dist/ is not built: run `node scripts/build.mjs` first');

  // An overlay with its own cluster size and a snapshot (then more writes, as a running guest
  // makes), on a base with data; the backing file is named relatively.
  work = mkdtempSync(path.join(tmpdir(), 'vdisk-browser-'));
  qemuImg(work, 'create', '-q', '-f', 'qcow2', 'base-disk.qcow2', '8M');
  qemuIo(work, '-f', 'qcow2', '-c', 'write -P 0xab 0 1M', 'base-disk.qcow2');
  qemuImg(work, 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=16384', '-b', 'base-disk.qcow2', '-F', 'qcow2', 'overlay.qcow2');
  qemuIo(work, '-f', 'qcow2', '-c', 'write -P 0xcd 2M 256k', 'overlay.qcow2');
  qemuImg(work, 'snapshot', '-c', 'before-upgrade', 'overlay.qcow2');
  qemuIo(work, '-f', 'qcow2', '-c', 'write -P 0xef 4M 64k', 'overlay.qcow2');

  server = await serve(DIST);
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A fresh page on the app that records every request leaving the local server and every error it logs. */
async function openApp(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.on('request', (r) => {
    if (new URL(r.url()).origin !== origin) foreignRequests.push(r.url());
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page: ${e.message}`));
  await page.goto(origin + '/');
  await expect.poll(() => page.locator('[data-field="kernels"]').textContent()).toMatch(/Kernels: /);
  return { context, page };
}

const field = (page: Page, key: string) => page.locator(`[data-field="${key}"]`).first();

/** Screenshots for a person checking the layout: VDISK_SCREENSHOTS=/some/dir. */
async function snap(page: Page, name: string): Promise<void> {
  const dir = process.env.VDISK_SCREENSHOTS;
  if (dir) await page.screenshot({ path: path.join(dir, `vdisk-${name}.png`) });
}

describe('Info page', () => {
  test('shows what qemu-img info says about an image and its backing file', async () => {
    const expected = qemuInfo(work, 'overlay.qcow2');
    const top = expected[0]!;
    const { context, page } = await openApp();
    try {
      await page.setInputFiles('input[name="image-files"]', [path.join(work, 'overlay.qcow2'), path.join(work, 'base-disk.qcow2')]);
      await field(page, 'virtual-size').waitFor();

      expect(await page.locator('h2').first().textContent()).toBe(top.filename);
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
      const shown = JSON.parse((await page.locator('pre[data-output="json"]').textContent())!) as Json[];
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
      expect(await page.locator('h2').first().textContent()).toBe('demo.qcow2');
      expect(await field(page, 'virtual-size').textContent()).toContain(`(${top['virtual-size']} bytes)`);
      expect(await field(page, 'backing-filename').textContent()).toContain(String(top['backing-filename']));
      expect(await page.locator('[data-field="snapshot-name"]').allTextContents()).toEqual((top.snapshots as Json[]).map((s) => s.name));
      expect(await page.locator('.chain button').count()).toBe(expected.length);
      await snap(page, 'info-sample');
    } finally {
      await context.close();
    }
  });

  test('made no request beyond the local server and logged no errors', () => {
    expect(foreignRequests).toEqual([]);
    expect(errors).toEqual([]);
  });
});
