/**
 * Parallel compression for the CLI: one worker thread per core, each running
 * Node's zlib with fixed parameters, so the output is the same whatever the
 * scheduling. The workers start with the first unit (a conversion that
 * compresses nothing starts none). Each unit goes to the worker with the
 * fewest bytes outstanding; the units handed over in one turn of the event
 * loop (a chunk's worth, as the pipeline asks) travel to each worker as one
 * message in one buffer and come back the same way.
 *
 * A thread is never terminated: one stopped in the middle of zlib brings the
 * whole process down (Node 20 asserts "close before init" while freeing it).
 * `close` raises the pool's stop flag instead; each worker checks it before
 * every message and ends once the one it is on is done, and the process
 * waits for that. `stopCompressing` does the same for every pool, for a
 * process that must exit now.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { Compressor } from '../engine/codecs/compress.ts';
import type { Codec } from '../engine/writer.ts';

/** Units in one message, and their bytes back to back in one buffer. */
interface Batch {
  codecs: Codec[];
  lengths: number[];
  bytes: Uint8Array;
}

// Plain CommonJS so it runs as an eval worker without a file of its own.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const zlib = require('node:zlib');
const stop = new Int32Array(workerData);
parentPort.on('message', (message) => {
  // Units queued behind a raised flag are not wanted any more.
  if (Atomics.load(stop, 0) !== 0) return parentPort.close();
  const { codecs, lengths, bytes } = message;
  const outs = [];
  let at = 0;
  for (let i = 0; i < lengths.length; i++) {
    const data = bytes.subarray(at, at += lengths[i]);
    outs.push(codecs[i] === 'zlib'
      ? zlib.deflateSync(data, { level: 6 })
      : zlib.deflateRawSync(data, { level: 6, windowBits: 12, memLevel: 9 }));
  }
  // A buffer of its own (never Node's shared pool), so it can be transferred.
  const out = new Uint8Array(outs.reduce((n, o) => n + o.length, 0));
  at = 0;
  for (const o of outs) {
    out.set(o, at);
    at += o.length;
  }
  parentPort.postMessage({ lengths: outs.map((o) => o.length), bytes: out }, [out.buffer]);
});
`;

interface Pending {
  codec: Codec;
  data: Uint8Array;
  resolve: (out: Uint8Array) => void;
  reject: (e: Error) => void;
}

interface PoolWorker {
  worker: Worker;
  /** Bytes handed over and not yet back. */
  outstanding: number;
  /** Units for the next message. */
  next: Pending[];
  /** Messages sent and not yet answered, in order (a worker answers in order). */
  sent: Pending[][];
}

/** Each open pool's close, and every worker thread not yet ended. */
const openPools = new Set<() => void>();
const running = new Set<Promise<void>>();

/** Closes every pool and resolves once all their threads have ended. */
export async function stopCompressing(): Promise<void> {
  for (const close of openPools) close();
  await Promise.all(running);
}

export function compressPool(size = availableParallelism()): Compressor {
  let workers: PoolWorker[] | undefined;
  let flushing = false;
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const fail = (e: Error) => {
    for (const w of workers ?? []) for (const p of [...w.sent.flat(), ...w.next]) p.reject(e);
  };
  const start = () =>
    Array.from({ length: Math.max(1, size) }, () => {
      const w: PoolWorker = { worker: new Worker(WORKER, { eval: true, workerData: stop.buffer }), outstanding: 0, next: [], sent: [] };
      const ended = new Promise<void>((resolve) => w.worker.once('exit', () => resolve()));
      running.add(ended);
      void ended.then(() => running.delete(ended));
      w.worker.on('message', ({ lengths, bytes }: Omit<Batch, 'codecs'>) => {
        const units = w.sent.shift()!;
        let at = 0;
        units.forEach((p, i) => {
          w.outstanding -= p.data.length;
          p.resolve(bytes.subarray(at, (at += lengths[i]!)));
        });
      });
      // A worker that dies fails every unit still out, rather than leaving the conversion waiting.
      w.worker.on('error', fail);
      return w;
    });
  /** Sends each worker's units as one message. */
  const flush = () => {
    flushing = false;
    for (const w of workers!) {
      if (w.next.length === 0) continue;
      const units = w.next.splice(0);
      const bytes = new Uint8Array(units.reduce((n, p) => n + p.data.length, 0));
      let at = 0;
      for (const p of units) {
        bytes.set(p.data, at);
        at += p.data.length;
      }
      w.sent.push(units);
      const batch: Batch = { codecs: units.map((p) => p.codec), lengths: units.map((p) => p.data.length), bytes };
      w.worker.postMessage(batch, [bytes.buffer]);
    }
  };
  const close = () => {
    openPools.delete(close);
    Atomics.store(stop, 0, 1);
    // An idle worker wakes for this message and ends; a busy one ends after the message it is on.
    for (const w of workers ?? []) w.worker.postMessage('stop');
  };
  openPools.add(close);
  return {
    compress(data: Uint8Array, codec: Codec) {
      workers ??= start();
      // Units differ a lot in cost (random data against text): the least busy worker takes the next one.
      const w = workers.reduce((a, b) => (b.outstanding < a.outstanding ? b : a));
      w.outstanding += data.length;
      // `data` is a view of the caller's buffer, reused later: its bytes are copied into the batch this turn.
      const promise = new Promise<Uint8Array>((resolve, reject) => w.next.push({ codec, data, resolve, reject }));
      if (!flushing) {
        flushing = true;
        queueMicrotask(flush);
      }
      return promise;
    },
    close,
  };
}
