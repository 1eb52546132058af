/**
 * The service worker: keeps every file of the build (the page, the engine's
 * worker, the WebAssembly kernels, the samples) in a cache named after the
 * build, and answers the app's requests from it, so the app works offline
 * once it has loaded. The first install takes over at once; a newer build
 * waits until the page asks for it (a reload in the middle of a conversion
 * would lose the work). scripts/build.mjs bundles this file to dist/sw.js
 * with the list of files and the build's version.
 */
/// <reference lib="webworker" />
import { SKIP_WAITING } from './lib/sw-messages.ts';

declare const self: ServiceWorkerGlobalScope;
/** The build's files, relative to this worker. */
declare const PRECACHE: string[];
/** A hash of the build's files: a new build gets a new cache. */
declare const VERSION: string;

const PREFIX = 'vdisk-workbench-';
const CACHE = PREFIX + VERSION;


self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // Past the HTTP cache: the files must be this build's.
      await cache.addAll(PRECACHE.map((path) => new Request(path, { cache: 'reload' })));
      if (!self.registration.active) await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('message', (event) => {
  if (event.data === SKIP_WAITING) void self.skipWaiting();
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      const hit = (await cache.match(request, { ignoreSearch: true })) ?? (request.mode === 'navigate' ? await cache.match('index.html') : undefined);
      return hit ?? fetch(request);
    })(),
  );
});
