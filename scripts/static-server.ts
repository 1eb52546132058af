/**
 * The built web app served from 127.0.0.1 as any static host would serve it,
 * and the headless Chromium that drives it: shared by the browser tests
 * (test/helpers/browser.ts) and the bench's browser section. No test
 * framework here, so the bench can import it.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

/** The built app: dist/, or VDISK_DIST. */
export const DIST = path.resolve(process.env.VDISK_DIST ?? 'dist');

/** Debian's Chromium with the flags every scripted page uses (playwright-core's `chromium.launch` options). */
export const CHROMIUM_LAUNCH = {
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
};

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
  if (!existsSync(path.join(root, 'index.html'))) throw new Error(`${root} has no built app: run \`node scripts/build.mjs web\` first (or set VDISK_DIST)`);
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
