/**
 * The web app as a platform, in Debian's Chromium: it keeps working offline
 * once loaded (service worker), its manifest makes it installable as a file
 * handler for disk images, files from the launch queue and from the File
 * System Access pickers open, the picked handles are remembered and reopen
 * after a reload, a crashed or failing worker leaves a message and a working
 * page, and everything is reachable from the keyboard. Expected answers come
 * from `qemu-img info --output=json` on the same files. The pickers and the
 * launch queue cannot be driven from outside the page, so the tests hand the
 * app File System Access handles from the origin private file system, which
 * are the same kind of handle the pickers give.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { AppBrowser, field, snap } from '../helpers/browser.ts';

type Json = { [key: string]: unknown };

const qemuImg = (cwd: string, ...args: string[]) => execFileSync('qemu-img', args, { cwd, encoding: 'utf8' });
const qemuIo = (cwd: string, ...args: string[]) => execFileSync('qemu-io', args, { cwd, encoding: 'utf8' });
const qemuInfo = (cwd: string, file: string): Json[] =>
  JSON.parse(qemuImg(cwd, 'info', '--output=json', '--backing-chain', file)) as Json[];

const IMAGE_EXTENSIONS = ['.qcow2', '.vmdk', '.vhd', '.vhdx', '.vdi', '.qed', '.img', '.raw'];

let work: string;
let app: AppBrowser;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'vdisk-platform-'));
  qemuImg(work, 'create', '-q', '-f', 'qcow2', 'disk-base.qcow2', '4M');
  qemuIo(work, '-f', 'qcow2', '-c', 'write -P 0x5a 0 256k', 'disk-base.qcow2');
  qemuImg(work, 'create', '-q', '-f', 'qcow2', '-b', 'disk-base.qcow2', '-F', 'qcow2', 'disk.qcow2', '6M');
  qemuIo(work, '-f', 'qcow2', '-c', 'write -P 0x6b 1M 64k', 'disk.qcow2');
  qemuImg(work, 'snapshot', '-c', 'first', 'disk.qcow2');
  qemuImg(work, 'create', '-q', '-f', 'vmdk', 'launched.vmdk', '3M');
  app = await AppBrowser.start();
});

afterAll(async () => {
  await app?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const virtualSize = (cwd: string, file: string) => `(${qemuInfo(cwd, file)[0]!['virtual-size']} bytes)`;
const paneTitle = (page: Page) => page.locator('[data-pane="0"] h2').first().textContent();

/** Copies test files into the page's origin private file system, under `folder`. */
async function toOpfs(page: Page, folder: string, names: string[]): Promise<void> {
  const files = names.map((name) => ({ name, base64: readFileSync(path.join(work, name)).toString('base64') }));
  await page.evaluate(
    async ({ folder, files }) => {
      const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(folder, { create: true });
      for (const f of files) {
        const w = await (await dir.getFileHandle(f.name, { create: true })).createWritable();
        await w.write(Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0)));
        await w.close();
      }
    },
    { folder, files },
  );
}

/** The pickers, as a user choosing `folder` (or the files in it) would answer them. */
async function pickersAnswer(context: BrowserContext, folder: string): Promise<void> {
  await context.addInitScript((folder) => {
    const dir = async () => (await navigator.storage.getDirectory()).getDirectoryHandle(folder);
    const w = window as unknown as Record<string, unknown>;
    w.showDirectoryPicker = dir;
    w.showOpenFilePicker = async () => {
      const out: FileSystemHandle[] = [];
      // Typed by hand: the test's DOM library has no async iteration of folders.
      const folder = (await dir()) as unknown as { values(): AsyncIterable<FileSystemHandle> };
      for await (const h of folder.values()) out.push(h);
      return out;
    };
  }, folder);
}

describe('the app as a platform', () => {
  test('works offline after the first load: reloads, opens the samples and picked images, with the WebAssembly kernels', async () => {
    const { context, page } = await app.openApp();
    try {
      // The service worker has precached the app and controls the page from its first load.
      await page.evaluate(() => navigator.serviceWorker.ready);
      await expect.poll(() => page.evaluate(() => navigator.serviceWorker.controller !== null)).toBe(true);

      app.server.offline(true);
      await context.setOffline(true);
      await page.reload();
      await expect.poll(() => field(page, 'kernels').textContent(), { timeout: 15_000 }).toMatch(/WebAssembly/);
      await snap(page, 'welcome-offline');

      await page.getByRole('button', { name: 'Try the sample images' }).click();
      await field(page, 'virtual-size').waitFor();
      expect(await paneTitle(page)).toBe('demo.qcow2');

      await page.setInputFiles('input[name="image-files"]', [path.join(work, 'disk.qcow2'), path.join(work, 'disk-base.qcow2')]);
      await expect.poll(() => paneTitle(page)).toBe('disk.qcow2');
      expect(await field(page, 'virtual-size').textContent()).toContain(virtualSize(work, 'disk.qcow2'));
    } finally {
      app.server.offline(false);
      await context.close();
    }
  });

  test('the manifest is valid, makes the app installable, and lists the image file handlers', async () => {
    const { context, page } = await app.openApp();
    try {
      const res = await page.request.get(`${app.server.origin}/manifest.webmanifest`);
      expect(res.headers()['content-type']).toMatch(/^application\/manifest\+json/);
      const manifest = (await res.json()) as { name: string; icons: unknown[]; file_handlers: { action: string; accept: Record<string, string[]> }[] };
      expect(manifest.name).toBe('vDisk Workbench');
      expect(manifest.icons.length).toBeGreaterThan(0);
      const extensions = manifest.file_handlers.flatMap((h) => Object.values(h.accept).flat());
      expect([...extensions].sort()).toEqual([...IMAGE_EXTENSIONS].sort());
      expect(manifest.file_handlers.map((h) => h.action)).toEqual(['/']);

      // Chromium's own reading of it: no parse errors, and nothing against installing it but the test's private profile.
      const cdp = await context.newCDPSession(page);
      const parsed = await cdp.send('Page.getAppManifest');
      expect(parsed.errors).toEqual([]);
      expect(parsed.url).toBe(`${app.server.origin}/manifest.webmanifest`);
      await page.evaluate(() => navigator.serviceWorker.ready);
      const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
      expect(installabilityErrors.map((e) => e.errorId).filter((id) => id !== 'in-incognito')).toEqual([]);
    } finally {
      await context.close();
    }
  });

  test('files the installed app is launched with, and dropped files, open like picked ones', async () => {
    const context = await app.browser.newContext({ viewport: { width: 1280, height: 800 } });
    // Catches the consumer the app gives the launch queue, to call it as the browser does on a launch.
    await context.addInitScript(() => {
      const queue = (window as unknown as { launchQueue: { setConsumer(c: unknown): void } }).launchQueue;
      const own = queue.setConsumer.bind(queue);
      queue.setConsumer = (c) => {
        (window as unknown as Record<string, unknown>).launchConsumer = c;
        own(c);
      };
    });
    const page = await context.newPage();
    app.watch(page);
    try {
      await page.goto(app.server.origin);
      await expect.poll(() => field(page, 'kernels').textContent(), { timeout: 15_000 }).toMatch(/Kernels: /);
      await toOpfs(page, 'launch', ['launched.vmdk']);
      await page.evaluate(async () => {
        const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('launch');
        const consumer = (window as unknown as { launchConsumer: (p: { files: FileSystemHandle[] }) => void }).launchConsumer;
        consumer({ files: [await dir.getFileHandle('launched.vmdk')] });
      });
      await expect.poll(() => paneTitle(page)).toBe('launched.vmdk');
      expect(await field(page, 'format').textContent()).toBe('vmdk');
      expect(await field(page, 'virtual-size').textContent()).toContain(virtualSize(work, 'launched.vmdk'));

      // A drop goes the same way; a page-made drop has no handles, and still opens.
      await toOpfs(page, 'launch', ['disk.qcow2', 'disk-base.qcow2']);
      await page.evaluate(async () => {
        const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('launch');
        const data = new DataTransfer();
        for (const name of ['disk.qcow2', 'disk-base.qcow2']) data.items.add(await (await dir.getFileHandle(name)).getFile());
        window.dispatchEvent(new DragEvent('drop', { dataTransfer: data, cancelable: true }));
      });
      await expect.poll(() => paneTitle(page)).toBe('disk.qcow2');
      await expect.poll(() => page.locator('.chain button').count()).toBe(qemuInfo(work, 'disk.qcow2').length);
    } finally {
      await context.close();
    }
  });

  test('picked handles are remembered and reopen after a reload, folder and files alike', async () => {
    const context = await app.browser.newContext({ viewport: { width: 1280, height: 800 } });
    await pickersAnswer(context, 'vm');
    const page = await context.newPage();
    app.watch(page);
    const expected = qemuInfo(work, 'disk.qcow2');
    try {
      await page.goto(app.server.origin);
      await expect.poll(() => field(page, 'kernels').textContent(), { timeout: 15_000 }).toMatch(/Kernels: /);
      await toOpfs(page, 'vm', ['disk.qcow2', 'disk-base.qcow2']);

      // The folder picker: the image and its backing file, found in the folder.
      await page.locator('header').getByRole('button', { name: 'Open folder…' }).click();
      await expect.poll(() => paneTitle(page)).toBe('vm/disk.qcow2');
      await expect.poll(() => page.locator('.chain button').count()).toBe(expected.length);
      await expect.poll(() => page.locator('header').getByText('Recent (1)').count()).toBe(1);

      // A new visit: the welcome screen lists it, and choosing it opens the same chain.
      await page.reload();
      const recent = page.locator('main [data-field="recent-files"]');
      await expect.poll(() => recent.locator('button.reopen').allTextContents()).toEqual([expect.stringContaining('vm/disk.qcow2')]);
      await snap(page, 'welcome-recent');
      await recent.getByRole('button', { name: /^vm\/disk\.qcow2/ }).click();
      await expect.poll(() => paneTitle(page)).toBe('vm/disk.qcow2');
      await expect.poll(() => page.locator('.chain button').count()).toBe(expected.length);
      expect(await field(page, 'virtual-size').textContent()).toContain(`(${expected[0]!['virtual-size']} bytes)`);
      expect(await page.locator('[data-field="snapshot-name"]').allTextContents()).toEqual((expected[0]!.snapshots as Json[]).map((s) => s.name));

      // The file picker: both files as handles, remembered together.
      await page.reload();
      await page.locator('header').getByRole('button', { name: 'Open files…' }).click();
      await expect.poll(() => paneTitle(page)).toBe('disk.qcow2');
      await expect.poll(() => page.locator('.chain button').count()).toBe(expected.length);
      await page.reload();
      const entries = page.locator('main [data-field="recent-files"]').locator('button.reopen');
      await expect.poll(() => entries.count()).toBe(2);
      await entries.filter({ hasText: /^disk\.qcow2/ }).click();
      await expect.poll(() => paneTitle(page)).toBe('disk.qcow2');
      await expect.poll(() => page.locator('.chain button').count()).toBe(expected.length);

      // Forgetting one leaves the other, in the header's menu too.
      await page.locator('header summary').click();
      await page.locator('header').getByRole('button', { name: 'Forget disk.qcow2' }).click();
      await expect.poll(() => page.locator('header button.reopen').allTextContents()).toEqual([expect.stringContaining('vm/disk.qcow2')]);
    } finally {
      await context.close();
    }
  });

  test('a crashed or failing worker leaves a message, and the next operation works', async () => {
    const { context, page } = await app.openApp();
    const chain = [path.join(work, 'disk.qcow2'), path.join(work, 'disk-base.qcow2')];
    const engineWorker = () => page.workers().find((w) => w.url().includes('/assets/worker'))!;
    try {
      // An uncaught error inside the worker.
      await engineWorker().evaluate(() => {
        setTimeout(() => {
          throw new Error('provoked crash');
        });
      });
      await expect.poll(() => page.getByRole('alert').textContent()).toMatch(/engine stopped unexpectedly.*provoked crash.*restarted/);
      await page.setInputFiles('input[name="image-files"]', chain);
      await expect.poll(() => paneTitle(page)).toBe('disk.qcow2');
      await expect.poll(() => page.getByRole('alert').count()).toBe(0);

      // An allocation that fails in the middle of an operation: the worker is replaced, not trusted again.
      await expect.poll(() => page.workers().length).toBe(1);
      await engineWorker().evaluate(() => {
        DataView.prototype.getUint32 = () => {
          throw new RangeError('Array buffer allocation failed');
        };
      });
      await page.setInputFiles('input[name="image-files"]', [path.join(work, 'launched.vmdk')]);
      await expect.poll(() => page.getByRole('alert').textContent()).toMatch(/unexpected error: Array buffer allocation failed.*restarted/);
      await page.setInputFiles('input[name="image-files"]', [path.join(work, 'launched.vmdk')]);
      await expect.poll(() => paneTitle(page)).toBe('launched.vmdk');
      expect(await field(page, 'virtual-size').textContent()).toContain(virtualSize(work, 'launched.vmdk'));
      await snap(page, 'info-after-restart');
    } finally {
      await context.close();
    }
  });

  test('keyboard only: a skip link, the open buttons, the sample, the image list and the view tabs, with visible focus', async () => {
    const { context, page } = await app.openApp();
    const focused = () => page.evaluate(() => document.activeElement?.textContent?.trim() ?? '');
    /** Presses Tab (or Shift+Tab) until the focused element matches, at most `limit` times. */
    async function tabTo(matches: () => Promise<boolean>, key = 'Tab', limit = 30): Promise<void> {
      for (let i = 0; i < limit; i++) {
        await page.keyboard.press(key);
        if (await matches()) return;
      }
      throw new Error(`never reached; last focused: ${await focused()}`);
    }
    try {
      await page.keyboard.press('Tab');
      expect(await focused()).toBe('Skip to the main content');
      // The header's open buttons come next, with focus drawn as an outline of a few pixels.
      await tabTo(async () => (await focused()) === 'Open files…');
      expect(await page.evaluate(() => document.activeElement!.closest('header') !== null)).toBe(true);
      expect(await page.evaluate(() => parseFloat(getComputedStyle(document.activeElement!).outlineWidth))).toBeGreaterThanOrEqual(2);
      await snap(page, 'welcome-focus');
      await tabTo(async () => (await focused()) === 'Open folder…');

      // The skip link jumps past the header: the next stop is the first control of the main content.
      await tabTo(async () => (await focused()) === 'Skip to the main content', 'Shift+Tab');
      await page.keyboard.press('Enter');
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('main');
      await page.keyboard.press('Tab');
      expect(await focused()).toBe('Try the sample images');
      await page.keyboard.press('Enter');
      await field(page, 'virtual-size').waitFor();

      // The image list's entries are buttons in the tab order; Enter shows one.
      await tabTo(async () => (await focused()).startsWith('demo.vmdk'));
      await page.keyboard.press('Enter');
      await expect.poll(() => paneTitle(page)).toBe('demo.vmdk');

      // The tab list is one stop; arrow keys move along it.
      await tabTo(() => page.evaluate(() => document.activeElement?.getAttribute('role') === 'tab'));
      const tabs = page.locator('[data-pane="0"] [role="tab"]');
      const names = await tabs.allTextContents();
      expect(names[0]).toBe('Info');
      await page.keyboard.press('ArrowRight');
      const next = names[1 % names.length]!;
      expect(await focused()).toBe(next);
      expect(await page.locator('[data-pane="0"] [role="tab"][aria-selected="true"]').textContent()).toBe(next);
      await page.keyboard.press('ArrowLeft');
      expect(await focused()).toBe('Info');
      await page.keyboard.press('End');
      expect(await focused()).toBe(names[names.length - 1]);
      await page.keyboard.press('Home');
      expect(await focused()).toBe('Info');
      expect(await page.locator('[data-pane="0"] [role="tab"][aria-selected="true"]').textContent()).toBe('Info');
    } finally {
      await context.close();
    }
  });

  test('the welcome screen follows the system theme, light and dark', async () => {
    const { context, page } = await app.openApp({ colorScheme: 'light' });
    /** The page background's mean channel value: high when light, low when dark. */
    const lightness = async () => {
      const [r, g, b] = (await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor)).match(/\d+/g)!.map(Number);
      return (r! + g! + b!) / 3;
    };
    try {
      await page.getByRole('button', { name: 'Try the sample images' }).waitFor();
      expect(await lightness()).toBeGreaterThan(128);
      await snap(page, 'welcome');
      await page.emulateMedia({ colorScheme: 'dark' });
      expect(await lightness()).toBeLessThan(128);
      await snap(page, 'welcome-dark');
    } finally {
      await context.close();
    }
  });

  test('made no request beyond the local server and logged no errors', () => {
    expect(app.foreignRequests).toEqual([]);
    expect(app.errors).toEqual([]);
  });
});
