/**
 * The page's side of the service worker (web/service-worker.ts): registers
 * it, says when the app is ready to work offline, and when a newer build is
 * waiting, offers to switch to it — the page never reloads by itself.
 */
import { SKIP_WAITING } from './sw-messages.ts';

export interface OfflineEvents {
  /** The first install finished: the app now works offline. */
  ready(): void;
  /** A newer build is installed and waiting; `apply` switches to it and reloads. */
  update(apply: () => void): void;
}

export function registerOffline(on: OfflineEvents): void {
  // The dev server serves sources, not a build: nothing to keep.
  if (!('serviceWorker' in navigator) || import.meta.env.DEV) return;
  const sw = navigator.serviceWorker;
  const firstInstall = sw.controller === null;
  let switching = false;
  sw.addEventListener('controllerchange', () => {
    if (switching) location.reload();
  });
  const offer = (waiting: ServiceWorker) =>
    on.update(() => {
      switching = true;
      waiting.postMessage(SKIP_WAITING);
    });
  const watch = (installing: ServiceWorker) =>
    installing.addEventListener('statechange', () => {
      if (firstInstall && installing.state === 'activated') on.ready();
      else if (!firstInstall && installing.state === 'installed') offer(installing);
    });
  sw.register('./sw.js').then(
    (reg) => {
      if (reg.waiting && !firstInstall) offer(reg.waiting);
      if (reg.installing) watch(reg.installing);
      reg.addEventListener('updatefound', () => reg.installing && watch(reg.installing));
    },
    // Without a service worker the app still works, only not offline.
    () => undefined,
  );
}
