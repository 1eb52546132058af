/**
 * The page's handle on the engine worker. The worker is created the Vite way,
 * so it is bundled as a module worker of its own; Comlink turns its facade into
 * async calls. One worker serves the page, started on first use.
 */
import { wrap, type Remote } from 'comlink';
import type { EngineWorker } from './engine-protocol.ts';

let remote: Remote<EngineWorker> | undefined;

export function engine(): Remote<EngineWorker> {
  if (!remote) {
    const worker = new Worker(new URL('../worker.ts', import.meta.url), { type: 'module', name: 'vdisk-engine' });
    remote = wrap<EngineWorker>(worker);
  }
  return remote;
}
