/**
 * Browser tests' common ground: the built app (dist/, or VDISK_DIST) served
 * from 127.0.0.1 as any static host would, Debian's Chromium driven through
 * playwright-core with the flags every browser test uses, and pages that
 * record each request leaving the local server and each error they log.
 * Screenshots of each view are kept in test/.out/screenshots (not committed).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { expect } from 'vitest';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';

export const DIST = path.resolve(process.env.VDISK_DIST ?? 'dist');
const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = path.resolve('test/.out/screenshots');

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

/** A static server for `root`; `offline()` makes it refuse everything, as a network that went away. */
export interface AppServer {
  origin: string;
  offline(down: boolean): void;
  close(): Promise<void>;
}

export async function serve(root = DIST): Promise<AppServer> {
  if (!existsSync(path.join(root, 'index.html'))) throw new Error(`${root} is not built: run \`node scripts/build.mjs\` first`);
  let down = false;
  const server: Server = createServer(async (req, res) => {
    if (down) {
      req.socket.destroy();
      return;
    }
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
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    offline: (d) => (down = d),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A browser on the served app, collecting what no test may see: requests to other origins, page errors. */
export class AppBrowser {
  readonly foreignRequests: string[] = [];
  readonly errors: string[] = [];

  private constructor(
    readonly browser: Browser,
    readonly server: AppServer,
  ) {}

  static async start(root = DIST): Promise<AppBrowser> {
    const server = await serve(root);
    return new AppBrowser(await launchChromium(), server);
  }

  /** A fresh context and page on the app, with the engine's worker up (its kernels are reported in the footer). */
  async openApp(options: BrowserContextOptions = {}, urlSuffix = '/'): Promise<{ context: BrowserContext; page: Page }> {
    const context = await this.browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
    context.on('request', (r) => {
      const url = new URL(r.url());
      if (url.origin !== this.server.origin && url.protocol !== 'blob:' && url.protocol !== 'data:') this.foreignRequests.push(r.url());
    });
    const page = await context.newPage();
    this.watch(page);
    await page.goto(this.server.origin + urlSuffix);
    await expect.poll(() => page.locator('[data-field="kernels"]').textContent(), { timeout: 15_000 }).toMatch(/Kernels: /);
    return { context, page };
  }

  /** Records console errors and uncaught exceptions of `page`. */
  watch(page: Page): void {
    page.on('console', (m) => {
      if (m.type() === 'error') this.errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => this.errors.push(`page: ${e.message}`));
  }

  async close(): Promise<void> {
    await this.browser.close();
    await this.server.close();
  }
}

export const field = (page: Page, key: string) => page.locator(`[data-field="${key}"]`).first();

/** Keeps a screenshot of the page as a test artifact. */
export async function snap(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}
