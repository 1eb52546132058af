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
import { nodeOpener, nodeWorkspace } from '../../cli/node-io.ts';
import { combinePath, normalizePath, type Opener } from '../../engine/io/opener.ts';
import type { ByteSink } from '../../engine/io/sink.ts';

export interface Mutant {
  id: number;
  /** The mutated file, known by this path; every other file is read from disk. */
  path: string;
  bytes: Uint8Array;
  /** The image opened: `path` itself, or an image that refers to it (a descriptor naming a mutated extent). */
  image: string;
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
  const mutated = new MemorySource(m.path, m.bytes);
  const isMutated = (path: string) => normalizePath(path) === normalizePath(m.path);
  // The mutated file stands in wherever it is named: as the image, or as a file an image refers to.
  const opener: Opener = {
    resolve: nodeOpener.resolve,
    open: async (name, from, kind) => (isMutated(combinePath(from.name, name)) ? mutated : nodeOpener.open(name, from, kind)),
  };
  const ws: Workspace = { opener, open: async (name) => (isMutated(name) ? mutated : nodeWorkspace.open(name)) };
  const api = new EngineApi(ws);
  const name = m.image;
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
