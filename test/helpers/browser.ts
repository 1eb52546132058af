/**
 * Browser tests' common ground: the built app (dist/, or VDISK_DIST) served
 * from 127.0.0.1 (scripts/static-server.ts), Debian's Chromium driven through
 * playwright-core with the flags every browser test uses, and pages that
 * record each request leaving the local server and each error they log.
 * Screenshots of each view are kept in test/.out/screenshots (not committed).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';
import { CHROMIUM_LAUNCH, DIST, serve, type AppServer } from '../../scripts/static-server.ts';

export { DIST, serve, type AppServer };

const SCREENSHOTS = path.resolve('test/.out/screenshots');

export function launchChromium(): Promise<Browser> {
  return chromium.launch(CHROMIUM_LAUNCH);
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
