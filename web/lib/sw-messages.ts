/** The message a page sends a waiting service worker to make it take over (see web/service-worker.ts). */
export const SKIP_WAITING = 'skip-waiting';
