/**
 * The page's handle on the engine worker. The worker is created the Vite way,
 * so it is bundled as a module worker of its own; Comlink turns its facade
 * into async calls. One worker serves the page, started on first use. A call
 * never outlives its worker: when the worker is stopped (Cancel) or breaks,
 * every call still waiting on it fails with `EngineStopped`, and the next call
 * starts a fresh worker. Engine errors come back as values, so a call that
 * throws met something unexpected (a bug, memory that could not be had): its
 * worker is replaced too, as if it had crashed.
 */
import { wrap, type Remote } from 'comlink';
import type { EngineWorker } from './engine-protocol.ts';

/** The worker a call was waiting on is gone: cancelled by the user, or broken. */
export class EngineStopped extends Error {
  constructor(
    message: string,
    /** True when the user asked for it (Cancel), false when the worker broke. */
    readonly cancelled: boolean,
  ) {
    super(message);
    this.name = 'EngineStopped';
  }
}

interface Running {
  worker: Worker;
  remote: Remote<EngineWorker>;
  /** Rejects when this worker stops; every call races it. */
  stopped: Promise<never>;
  stop(reason: EngineStopped): void;
}

let running: Running | undefined;
const stopListeners = new Set<(reason: EngineStopped) => void>();

function start(): Running {
  const worker = new Worker(new URL('../worker.ts', import.meta.url), { type: 'module', name: 'vdisk-engine' });
  let stop!: (reason: EngineStopped) => void;
  let done = false;
  const stopped = new Promise<never>((_, reject) => (stop = reject));
  // A worker nobody is waiting on may stop too; that is not an unhandled rejection.
  stopped.catch(() => undefined);
  const r: Running = {
    worker,
    remote: wrap<EngineWorker>(worker),
    stopped,
    stop(reason) {
      // Stopped once: a crash seen by two waiting calls is told once.
      if (done) return;
      done = true;
      worker.terminate();
      if (running === r) running = undefined;
      stop(reason);
      for (const l of stopListeners) l(reason);
    },
  };
  // An error that escapes the engine (or a worker that fails to load) leaves it in an unknown state: start over.
  worker.addEventListener('error', (e) => {
    e.preventDefault();
    r.stop(new EngineStopped(`The engine stopped unexpectedly${e.message ? `: ${e.message}` : ''}. It has been restarted; try again.`, false));
  });
  worker.addEventListener('messageerror', () => r.stop(new EngineStopped('The engine sent a message the page could not read. It has been restarted.', false)));
  return r;
}

/** Runs one call on the engine; it fails with `EngineStopped` if the worker stops first. */
export function engine<T>(call: (remote: Remote<EngineWorker>) => Promise<T>): Promise<T> {
  running ??= start();
  const r = running;
  return Promise.race([call(r.remote), r.stopped]).catch((e: unknown) => {
    if (e instanceof EngineStopped) throw e;
    const reason = new EngineStopped(`The engine stopped on an unexpected error: ${e instanceof Error ? e.message : String(e)}. It has been restarted; try again.`, false);
    r.stop(reason);
    throw reason;
  });
}

/** Stops the worker and whatever it was doing (Cancel); the next call starts a fresh one. */
export function stopEngine(message = 'Cancelled.'): void {
  running?.stop(new EngineStopped(message, true));
}

/** Tells `listener` every time the worker stops; returns the unsubscribe. */
export function onEngineStopped(listener: (reason: EngineStopped) => void): () => void {
  stopListeners.add(listener);
  return () => stopListeners.delete(listener);
}
