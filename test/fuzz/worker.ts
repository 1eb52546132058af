/**
 * The fuzz worker: runs every operation on one mutated image at a time, in a
 * worker thread the fuzz test can terminate (a hang) and whose heap is capped
 * (unbounded memory). It answers, per mutant, how each operation ended: a
 * result, a typed engine error, or an untyped exception (a bug).
 */
import { parentPort } from 'node:worker_threads';
import { EngineApi, type Workspace } from '../../engine/api.ts';
import { VDiskError } from '../../engine/errors.ts';
import { MemorySource } from '../../engine/io/source.ts';
import { nodeOpener } from '../../cli/node-io.ts';
import type { ByteSink } from '../../engine/io/sink.ts';

export interface Mutant {
  id: number;
  /** The mutated image, known by this path; files it refers to are read from disk. */
  path: string;
  bytes: Uint8Array;
}

export interface Outcome {
  id: number;
  /** Per operation: 'ok', 'typed:<ErrorClass>' or 'untyped:<message and stack>'. */
  ops: Record<string, string>;
}

/** Discards what it is given: a read of the whole image without writing it anywhere. */
const nullSink = (name: string): ByteSink => ({ name, write: async () => {}, commit: async () => {}, abort: async () => {} });

async function outcome(op: () => Promise<unknown>): Promise<string> {
  try {
    await op();
    return 'ok';
  } catch (e) {
    if (e instanceof VDiskError) return `typed:${e.constructor.name}`;
    return `untyped:${(e as Error)?.stack ?? String(e)}`;
  }
}

async function run(m: Mutant): Promise<Outcome> {
  const ws: Workspace = {
    opener: nodeOpener,
    open: async (name) => (name === m.path ? new MemorySource(m.path, m.bytes) : nodeOpener.open(name, new MemorySource(m.path, m.bytes), 'image')),
  };
  const api = new EngineApi(ws);
  const name = m.path;
  return {
    id: m.id,
    ops: {
      info: await outcome(() => api.info({ name, backingChain: true, partial: true })),
      map: await outcome(() => api.map({ name })),
      check: await outcome(() => api.check({ name })),
      read: await outcome(() => api.convert({ name, outFormat: 'raw' }, { name: '/dev/null', sink: nullSink('/dev/null'), openSink: async (n) => nullSink(n) })),
      compare: await outcome(() => api.compare({ name }, { name })),
    },
  };
}

parentPort!.on('message', (m: Mutant) => {
  void run(m).then((o) => parentPort!.postMessage(o));
});
