/**
 * Parallel compression for the CLI: one worker thread per core, each running
 * Node's zlib with fixed parameters, so the output is the same whatever the
 * scheduling. Units go out round-robin and come back matched by id. The
 * workers keep the process alive while they run; `close` ends them.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { Compressor } from '../engine/codecs/compress.ts';
import type { Codec } from '../engine/writer.ts';

// Plain CommonJS so it runs as an eval worker without a file of its own.
const WORKER = `
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
parentPort.on('message', ({ id, data, codec }) => {
  const out = codec === 'zlib'
    ? zlib.deflateSync(data, { level: 6 })
    : zlib.deflateRawSync(data, { level: 6, windowBits: 12, memLevel: 9 });
  parentPort.postMessage({ id, out }, [out.buffer]);
});
`;

interface Reply {
  id: number;
  out: Uint8Array;
}

export function compressPool(size = availableParallelism()): Compressor {
  const workers = Array.from({ length: Math.max(1, size) }, () => new Worker(WORKER, { eval: true }));
  const waiting = new Map<number, { resolve: (out: Uint8Array) => void; reject: (e: Error) => void }>();
  for (const w of workers) {
    w.on('message', ({ id, out }: Reply) => {
      waiting.get(id)!.resolve(new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
      waiting.delete(id);
    });
    // A worker that dies fails every unit still out, rather than leaving the conversion waiting.
    w.on('error', (e: Error) => {
      for (const p of waiting.values()) p.reject(e);
      waiting.clear();
    });
  }
  let next = 0;
  return {
    compress(data: Uint8Array, codec: Codec) {
      const id = next++;
      const copy = data.slice();
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        workers[id % workers.length]!.postMessage({ id, data: copy, codec }, [copy.buffer]);
      });
    },
    close() {
      for (const w of workers) void w.terminate();
    },
  };
}
