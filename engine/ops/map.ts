/**
 * `map`: the allocation of the guest address space, as qemu-img map reports
 * it — ranges with the depth of the layer that holds them, whether they are
 * present, zero or data, and the host offset where one is known. Adjacent
 * ranges merge under qemu's rules, so the output lines up with qemu-img's.
 */
import type { Image } from '../image.ts';
import { throwIfAborted } from '../errors.ts';
import { resolve } from './resolve.ts';

export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  /** Host offset in `filename`, when the range occupies a known place in a file. */
  offset?: number;
  filename?: string;
  /** Held in compressed units (not reported by qemu-img 7.2, which shows data without offset). */
  compressed: boolean;
}

/** qemu-img's entry_mergeable. */
function mergeable(a: MapEntry, b: MapEntry): boolean {
  return (
    a.zero === b.zero &&
    a.data === b.data &&
    a.depth === b.depth &&
    a.present === b.present &&
    a.compressed === b.compressed &&
    a.filename === b.filename &&
    (a.offset === undefined) === (b.offset === undefined) &&
    (a.offset === undefined || a.offset + a.length === b.offset)
  );
}

export interface MapOptions {
  start?: number;
  length?: number;
  signal?: AbortSignal;
}

/** Walks [start, start + length) and yields merged entries in order. */
export async function* mapImage(image: Image, opts: MapOptions = {}): AsyncGenerator<MapEntry> {
  const start = Math.min(opts.start ?? 0, image.size);
  const end = Math.min(image.size, start + (opts.length ?? image.size));
  let cur: MapEntry | undefined;
  for (let pos = start; pos < end; ) {
    throwIfAborted(opts.signal);
    const r = await resolve(image, pos, end - pos);
    const m = r.mapping;
    const host = m.kind === 'data' ? { source: m.source, hostOffset: m.hostOffset } : m.kind === 'zero' ? m.host : undefined;
    const next: MapEntry = {
      start: pos,
      length: m.length,
      depth: r.depth,
      present: r.present,
      zero: m.kind === 'zero',
      data: m.kind !== 'zero',
      offset: host?.hostOffset,
      filename: host?.source.name,
      compressed: m.kind === 'compressed',
    };
    pos += m.length;
    if (cur && mergeable(cur, next)) {
      cur.length += next.length;
      continue;
    }
    if (cur) yield cur;
    cur = next;
  }
  // qemu-img prints its empty starting entry when there is nothing to map.
  yield cur ?? { start, length: 0, depth: 0, present: false, zero: false, data: false, compressed: false };
}
