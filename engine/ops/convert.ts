/**
 * `convert`: the guest bytes of any image, into any writer. The source is read
 * once, a chunk at a time, into kernel memory. Ranges its layers report as
 * zero are never read. Each unit of the writer's size is then data (handed
 * over in runs), zero (left out, so the output stays sparse — qemu-img's -S,
 * 4 KiB by default) or, over a backing file (-B), equal to the backing file
 * (left out) or zero where the backing file is not (recorded as zero). A
 * caller may also name ranges whose contents do not matter (a file system's
 * free blocks); their units are left out too.
 *
 * The steps overlap: while the writer stores one chunk, the next ones are
 * read and scanned, and their units compressed in parallel when the writer
 * stores them compressed. Zeros that no layer reports (a raw file's holes and
 * written zeros) must be read like data: a chunk that holds nothing to write
 * gives its buffer back as soon as it is scanned, and chunks still waiting for
 * a buffer may be looked at ahead of their turn, so such zeros are read while
 * the writer is still busy with the data before them. The writer still gets
 * every unit in guest order.
 */
import type { Image } from '../image.ts';
import type { BlockWriter } from '../writer.ts';
import type { Compressor } from '../codecs/compress.ts';
import { throwIfAborted } from '../errors.ts';
import { kernels } from '../kernels/index.ts';
import { ImageReader } from './read.ts';
import { resolve, type Resolved } from './resolve.ts';
import { PlanReader, type PlanError } from './plan.ts';

/**
 * Bytes read per step, rounded to whole units (writers' units are at most
 * 4 MiB). Every read and write is a round trip to another thread, which on a
 * virtual machine costs tens of microseconds of wake-ups: 8 MiB steps make a
 * quarter of the system calls 2 MiB steps did (8,900 against 30,500 for a
 * 4 GiB raw → qcow2) and cut user time by about a fifth.
 */
const CHUNK = 8 * 1024 * 1024;
/**
 * Bytes read per step when units are compressed: every unit of the chunks in
 * flight is on its way to a compressor at once, and a 4 GiB `-c` conversion
 * peaked at 324 MB resident with 8 MiB steps against 232 MB with these.
 */
const COMPRESSING_CHUNK = 2 * 1024 * 1024;
/** Chunks holding buffers at once: one with the writer while the next ones are read and scanned. */
const DEPTH = 3;
/**
 * Chunks read at once: copies from the page cache (or `Blob` reads) in two
 * threads while a third writes. Measured 20% faster than one at a time.
 */
const READS = 2;
/**
 * Steps planned ahead at most, however many of them are skips or chunks
 * scanned to nothing: up to 2 GiB looked at ahead of the writer at 8 MiB steps.
 */
const MAX_QUEUED = 256;
/** Bytes at the start of a chunk looked at ahead of its read: any data there, and it waits its turn. */
const LOOK = 64 * 1024;

export interface Progress {
  done: number;
  total: number;
}

/** A range of guest bytes. */
export interface GuestRange {
  start: number;
  length: number;
}

export interface ConvertOptions {
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** qemu-img's -S: zero runs at least this long are left out; 0 leaves out only what the source says is zero. */
  sparseSize?: number;
  /** -B: the output's backing image; units that read the same from it are left out. */
  backing?: Image;
  /** Compresses units for writers that store them compressed (`-c`, stream-optimized VMDK). */
  compressor?: Compressor;
  /** Looks at chunks ahead of their turn for zeros that no layer reports (see below): for sources that read cheaply out of turn. */
  lookAhead?: boolean;
  /**
   * Guest ranges whose contents do not matter (blocks a file system marks
   * free), asked once per chunk read: units wholly inside them are left out
   * of the output whatever they hold.
   */
  freeRanges?: (start: number, length: number) => Promise<readonly GuestRange[]>;
}

/** What one unit becomes in the output. */
const enum Unit {
  Skip,
  Data,
  Zero,
}

/** One piece of the walk, in guest order. */
type Step =
  /** The source reads as zeros up to `end` (a unit boundary or the end): nothing to read or write. */
  | { kind: 'skip'; end: number }
  | ChunkStep;

/** Read [pos, pos + len) from the runs that cover it, in order. */
interface ChunkStep {
  kind: 'chunk';
  pos: number;
  len: number;
  runs: Resolved[];
}

/** A chunk read and scanned: what each unit becomes, and its compressed bytes when the writer wants them. */
interface Scanned {
  kinds: Unit[];
  packed?: (Promise<Uint8Array> | undefined)[];
}

interface Slot {
  data: Uint8Array;
  /** The backing file's bytes over the same range (-B). */
  theirs?: Uint8Array;
}

interface Queued {
  step: Step | PlanError;
  /** The chunk's buffers, from its read until the writer has its data (or the scan found none). */
  slot?: Slot;
  scanned?: Promise<Scanned>;
  /** Looked at ahead of its read (whatever was found). */
  lookedAt?: boolean;
}

const runEnd = (r: Resolved) => r.mapping.offset + r.mapping.length;

export async function convertImage(image: Image, writer: BlockWriter, opts: ConvertOptions = {}): Promise<void> {
  const k = kernels();
  const unit = writer.blockSize;
  const compressor = writer.codec ? opts.compressor : undefined;
  const step = compressor ? COMPRESSING_CHUNK : CHUNK;
  const chunk = Math.max(unit, step - (step % unit));
  const reader = new ImageReader(image);
  const backingReader = opts.backing ? new ImageReader(opts.backing) : undefined;
  const sparse = opts.sparseSize ?? 4096;
  const size = image.size;

  /** Reads a chunk into its slot, classifies its units and sets their compression going. */
  const scan = async (pos: number, len: number, runs: Resolved[], slot: Slot): Promise<Scanned> => {
    const data = slot.data.subarray(0, len);
    const saidZero = await fillChunk(reader, runs, pos, data, unit);
    const free = opts.freeRanges ? coveredUnits(await opts.freeRanges(pos, len), pos, len, unit) : undefined;
    const kinds = classify(data, saidZero, free, unit, sparse, k.isZero);
    if (opts.backing && backingReader && slot.theirs) {
      const theirs = slot.theirs.subarray(0, len);
      const inBacking = Math.max(0, Math.min(len, opts.backing.size - pos));
      await backingReader.read(pos, theirs.subarray(0, inBacking));
      theirs.fill(0, inBacking);
      for (let i = 0; i < kinds.length; i++) {
        if (free?.[i]) continue;
        const a = data.subarray(i * unit, Math.min(len, (i + 1) * unit));
        const b = theirs.subarray(i * unit, Math.min(len, (i + 1) * unit));
        if (k.firstDifference(a, b) < 0) kinds[i] = Unit.Skip;
        else if (k.isZero(a)) kinds[i] = Unit.Zero;
        else kinds[i] = Unit.Data;
      }
    }
    if (!compressor) return { kinds };
    // The chunk's buffer holds whole units, so a short last unit is padded in place.
    const packable = (i: number) =>
      writer.padsLastUnit && (i + 1) * unit > len ? slot.data.fill(0, len, (i + 1) * unit).subarray(i * unit, (i + 1) * unit) : unitOf(data, i, unit);
    const packed = kinds.map((kind, i) => (kind === Unit.Data ? compressor.compress(packable(i), writer.codec!) : undefined));
    // Awaited in order later; units after a failure never are.
    for (const p of packed) p?.catch(() => {});
    return { kinds, packed };
  };

  const slots: Slot[] = Array.from({ length: DEPTH }, () => ({ data: k.alloc(chunk), theirs: opts.backing ? k.alloc(chunk) : undefined }));
  const idle = [...slots];
  const queue: Queued[] = [];
  const steps = new PlanReader(plan(image, unit, chunk, !opts.backing));
  // Chunks take turns in READS lanes, each read after the one before it in its lane. Reads
  // of the backing file walk its tables, so with -B there is one lane: no two walks race.
  const lanes: Promise<unknown>[] = Array.from({ length: opts.backing ? 1 : READS }, () => Promise.resolve());
  let chunks = 0;
  // Reading zeros that no layer reports is all there is to do for them; done in turn, the writer
  // would wait for it. So chunks waiting for a slot are looked at ahead of their turn, with a
  // buffer of their own: one that scans to nothing is done before its turn comes (measured on a
  // 4 GiB raw → qcow2 that is half zeros, the writer had been idle for 0.9 s of 2.9 s).
  // Not when units are compressed (compressing is the bottleneck there) or compared with a
  // backing file (one lane only).
  const spare: Slot | undefined = opts.lookAhead && !compressor && !opts.backing ? { data: k.alloc(chunk) } : undefined;
  /** Set once the walk is over: no read starts after that. */
  let closed = false;
  /** The look ahead under way, if any. */
  let looking: Promise<void> | undefined;

  /** Reads a chunk into a slot; a chunk with nothing to write from it gives the slot back at once. */
  const read = (item: Queued, { pos, len, runs }: ChunkStep, slot: Slot) => {
    const lane = chunks++ % lanes.length;
    const scanned = lanes[lane]!.then(() => scan(pos, len, runs, slot));
    lanes[lane] = scanned.catch(() => {});
    item.slot = slot;
    item.scanned = scanned;
    // A zero unit is written by its length, so without data units nothing needs the buffer and
    // it takes the next read instead of waiting for the writer to get here. This reaction runs
    // before the walk's own await of the scan, which then finds no slot.
    scanned.then(
      ({ kinds }) => {
        if (kinds.includes(Unit.Data)) return;
        item.slot = undefined;
        idle.push(slot);
        startReads();
      },
      () => {},
    );
  };

  /** Starts reads of planned chunks into the free slots, in guest order. */
  const startReads = () => {
    for (const item of queue) {
      if (closed || idle.length === 0) return;
      if (item.step.kind === 'chunk' && !item.scanned) read(item, item.step, idle.pop()!);
    }
  };

  /** Plans steps ahead of the walk, for slots that free up early and for the look ahead. */
  const topUp = async () => {
    startReads();
    while (!closed && !steps.done && queue.length < MAX_QUEUED) {
      const step = await steps.next();
      if (!step) break;
      queue.push({ step });
      startReads();
    }
    if (spare) looking ??= lookAhead(spare).finally(() => (looking = undefined));
  };

  /** Scans, into `slot`, planned chunks not yet read whose first bytes are zero. */
  const lookAhead = async (slot: Slot) => {
    for (;;) {
      const item = queue.find((i) => i.step.kind === 'chunk' && !i.scanned && !i.lookedAt);
      if (closed || !item) return;
      item.lookedAt = true;
      const { pos, len, runs } = item.step as ChunkStep;
      // Compressed units would be decoded only to be decoded again.
      if (runs.some((r) => r.mapping.kind === 'compressed')) continue;
      try {
        const head = slot.data.subarray(0, Math.min(len, LOOK));
        await fillChunk(reader, runs.filter((r) => r.mapping.offset < pos + head.length), pos, head, unit);
        if (item.scanned || !k.isZero(head)) continue;
        const scanned = await scan(pos, len, runs, slot);
        if (!item.scanned && !scanned.kinds.includes(Unit.Data)) item.scanned = Promise.resolve(scanned);
      } catch {
        // Left for the chunk's own read to report, when the walk gets there.
      }
    }
  };

  try {
    for (;;) {
      throwIfAborted(opts.signal);
      await topUp();
      const item = queue.shift();
      if (!item) break;
      const { step } = item;
      if (step.kind === 'error') throw step.error;
      if (step.kind === 'skip') {
        opts.onProgress?.({ done: step.end, total: size });
        continue;
      }
      // Started by now: every slot is free when nothing before this chunk is left.
      const { kinds, packed } = await item.scanned!;
      await emit(writer, item.slot?.data, step.pos, step.len, kinds, unit, packed);
      if (item.slot) idle.push(item.slot);
      opts.onProgress?.({ done: step.pos + step.len, total: size });
    }
    await writer.finish();
  } catch (e) {
    await writer.abort();
    throw e;
  } finally {
    // Reads still in flight finish before their buffers are reused.
    closed = true;
    await looking;
    await Promise.all(lanes);
    for (const s of spare ? [...slots, spare] : slots) {
      k.free(s.data);
      if (s.theirs) k.free(s.theirs);
    }
  }
}

/**
 * The walk in guest order: a zero run that reaches past the next unit
 * boundary is skipped without reading (unless units must be compared with a
 * backing file); the rest goes in chunks, each with the runs covering it. A
 * run is resolved once however many chunks it spans.
 */
async function* plan(image: Image, unit: number, chunk: number, skipZero: boolean): AsyncGenerator<Step> {
  const size = image.size;
  let run: Resolved | undefined;
  const at = async (pos: number) => (run && runEnd(run) > pos ? run : (run = await resolve(image, pos, size - pos)));
  for (let pos = 0; pos < size; ) {
    const first = await at(pos);
    if (skipZero && first.mapping.kind === 'zero') {
      const end = runEnd(first);
      const skipTo = end >= size ? size : end - (end % unit);
      if (skipTo > pos) {
        yield { kind: 'skip', end: skipTo };
        pos = skipTo;
        continue;
      }
    }
    const len = Math.min(chunk, size - pos);
    const runs = [first];
    for (let p = runEnd(first); p < pos + len; p = runEnd(runs[runs.length - 1]!)) runs.push(await at(p));
    yield { kind: 'chunk', pos, len, runs };
    pos += len;
  }
}

/**
 * Reads [pos, pos + out.length) from the runs that cover it; returns, per
 * unit, how many of its bytes the source says are zero (those are never read).
 */
async function fillChunk(reader: ImageReader, runs: Resolved[], pos: number, out: Uint8Array, unit: number): Promise<Uint32Array> {
  const saidZero = new Uint32Array(Math.ceil(out.length / unit));
  for (const r of runs) {
    const at = Math.max(r.mapping.offset, pos) - pos;
    const end = Math.min(runEnd(r) - pos, out.length);
    if (r.mapping.kind === 'zero') {
      out.fill(0, at, end);
      for (let u = Math.floor(at / unit); u * unit < end; u++) saidZero[u]! += Math.min(end, (u + 1) * unit) - Math.max(at, u * unit);
    } else await reader.fill(r, out.subarray(at, end), pos + at);
  }
  return saidZero;
}

/** Per unit of [pos, pos + len): whether it lies wholly inside the ranges. */
function coveredUnits(ranges: readonly GuestRange[], pos: number, len: number, unit: number): boolean[] {
  const covered: boolean[] = new Array(Math.ceil(len / unit)).fill(false);
  const clipped = ranges
    .map((r) => ({ start: Math.max(r.start, pos) - pos, end: Math.min(r.start + r.length, pos + len) - pos }))
    .filter((r) => r.end > r.start)
    .sort((a, b) => a.start - b.start);
  for (let i = 0; i < clipped.length; ) {
    // Overlapping or touching ranges count as one.
    let end = clipped[i]!.end;
    const start = clipped[i]!.start;
    for (i++; i < clipped.length && clipped[i]!.start <= end; i++) end = Math.max(end, clipped[i]!.end);
    for (let u = Math.ceil(start / unit); u * unit < end && Math.min(len, (u + 1) * unit) <= end; u++) covered[u] = true;
  }
  return covered;
}

/**
 * Data or not, per unit: a unit the source says is zero, or that lies in a
 * free range, is left out; so is an all-zero unit in a zero run of at least
 * `sparse` bytes (-S).
 */
function classify(
  data: Uint8Array,
  saidZero: Uint32Array,
  free: boolean[] | undefined,
  unit: number,
  sparse: number,
  isZero: (b: Uint8Array) => boolean,
): Unit[] {
  const n = saidZero.length;
  const kinds: Unit[] = new Array(n);
  const zero: boolean[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const from = i * unit;
    const to = Math.min(data.length, from + unit);
    const said = saidZero[i] === to - from || free?.[i] === true;
    zero[i] = said || (sparse > 0 && isZero(data.subarray(from, to)));
    kinds[i] = said ? Unit.Skip : Unit.Data;
  }
  if (sparse === 0) return kinds;
  // Zero units are left out only in runs long enough for -S.
  for (let i = 0; i < n; ) {
    if (!zero[i]) {
      i++;
      continue;
    }
    let j = i;
    while (j < n && zero[j]) j++;
    if (Math.min(data.length, j * unit) - i * unit >= sparse) for (let x = i; x < j; x++) kinds[x] = Unit.Skip;
    i = j;
  }
  return kinds;
}

const unitOf = (data: Uint8Array, i: number, unit: number) => data.subarray(i * unit, Math.min(data.length, (i + 1) * unit));

/**
 * Hands the chunk [pos, pos + len) to the writer: runs of data, compressed
 * units as they were packed, zero ranges. `data` is the chunk's buffer, gone
 * when no unit is data.
 */
async function emit(
  writer: BlockWriter,
  data: Uint8Array | undefined,
  pos: number,
  len: number,
  kinds: Unit[],
  unit: number,
  packed?: (Promise<Uint8Array> | undefined)[],
): Promise<void> {
  const end = (j: number) => Math.min(len, j * unit);
  for (let i = 0; i < kinds.length; ) {
    // Compressed units go one at a time, as they were packed; the rest in runs of a kind.
    let j = i + 1;
    if (!packed) while (j < kinds.length && kinds[j] === kinds[i]) j++;
    const at = i * unit;
    if (kinds[i] === Unit.Data) {
      const bytes = data!.subarray(at, end(j));
      await (packed ? writer.writeCompressed(pos + at, await packed[i]!, bytes) : writer.write(pos + at, bytes));
    } else if (kinds[i] === Unit.Zero) await writer.writeZero(pos + at, end(j) - at);
    i = j;
  }
}
