/**
 * Parallel compression in the browser: the engine's worker starts a few Web
 * Workers (one per spare core) that pack units with pako. Units go out
 * round-robin and come back matched by id; the engine awaits them in guest
 * order, so the output is the same bytes however the workers are scheduled.
 */
import type { Compressor } from '../../engine/codecs/compress.ts';
import type { Codec } from '../../engine/writer.ts';
import type { CompressJob } from './compress-worker.ts';

interface Reply {
  id: number;
  out: Uint8Array;
}

/** One worker per core beyond the engine's own, at least one. */
export const poolSize = (): number => Math.max(1, (navigator.hardwareConcurrency || 2) - 1);

export function webCompressPool(size = poolSize()): Compressor {
  const workers = Array.from({ length: size }, () => new Worker(new URL('./compress-worker.ts', import.meta.url), { type: 'module', name: 'vdisk-compress' }));
  const waiting = new Map<number, { resolve: (out: Uint8Array) => void; reject: (e: Error) => void }>();
  const failAll = (e: Error) => {
    for (const p of waiting.values()) p.reject(e);
    waiting.clear();
  };
  for (const w of workers) {
    w.onmessage = ({ data: { id, out } }: MessageEvent<Reply>) => {
      waiting.get(id)?.resolve(out);
      waiting.delete(id);
    };
    // A worker that fails to load or dies fails every unit still out, rather than leaving the conversion waiting.
    w.onerror = (e) => {
      e.preventDefault();
      failAll(new Error(`A compression worker stopped${e.message ? `: ${e.message}` : ''}`));
    };
  }
  let next = 0;
  return {
    compress(data: Uint8Array, codec: Codec) {
      const id = next++;
      // A copy: `data` is a view of the engine's buffer, reused once this chunk is written.
      const job: CompressJob = { id, data: data.slice(), codec };
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        workers[id % workers.length]!.postMessage(job, [job.data.buffer]);
      });
    },
    close() {
      for (const w of workers) w.terminate();
      failAll(new Error('The compression workers were closed'));
    },
  };
}
