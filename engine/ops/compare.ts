/**
 * `compare`: are two images' guest contents the same? qemu-img compare's
 * rules — unallocated reads as zero, a size difference is allowed when the
 * extra tail is zero, strict mode also compares allocation — walked the way
 * qemu-img walks them, so verdicts and reported offsets match. Beyond it:
 * with `all`, every differing range (at 512-byte sector granularity) and an
 * xxHash32 of each side of it, for reports. For speed, the next chunk's reads
 * run while the current one is compared, each chunk is compared by the
 * kernels as soon as its bytes arrive, and a run is resolved once however
 * many chunks it spans; verdicts are still taken in guest order.
 */
import type { Image } from '../image.ts';
import { throwIfAborted, VDiskError } from '../errors.ts';
import { kernels } from '../kernels/index.ts';
import { xxh32Hex } from '../kernels/xxh32.ts';
import { ImageReader } from './read.ts';
import { resolve, type Resolved } from './resolve.ts';
import { PlanReader, type PlanError } from './plan.ts';
import type { Progress } from './convert.ts';

/** qemu-img compare reads at most this much at a time; offsets it reports follow from it. */
const IO_BUF = 2 * 1024 * 1024;
const SECTOR = 512;

export interface CompareSide {
  image: Image;
  name: string;
}

export interface CompareOptions {
  strict?: boolean;
  /** Find every differing range instead of stopping at the first. */
  all?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

export interface DiffRange {
  start: number;
  length: number;
  /** xxHash32 of each side's bytes over the range; absent for a side that ends before it. */
  hashA?: string;
  hashB?: string;
}

export interface CompareReport {
  identical: boolean;
  sizeA: number;
  sizeB: number;
  /** What qemu-img compare prints, in order, without --all. */
  messages: string[];
  /** The differing ranges: all of them with `all`, else the first. */
  ranges: DiffRange[];
}

/** A step of the comparison failed; `step` decides qemu-img's exit code (3 allocation, 4 read). */
export class CompareStepError extends VDiskError {
  constructor(
    readonly step: 'allocation' | 'read',
    file: string,
    readonly offset: number,
    readonly inner: unknown,
  ) {
    super(
      file,
      step === 'allocation'
        ? `Sector allocation test failed for ${file}`
        : `Error while reading offset ${offset} of ${file}: ${(inner as Error).message}`,
    );
  }
}

async function status(side: CompareSide, offset: number, length: number): Promise<Resolved> {
  try {
    return await resolve(side.image, offset, length);
  } catch (e) {
    throw new CompareStepError('allocation', side.name, offset, e);
  }
}

/** Collects differing sectors into maximal ranges. */
class Ranges {
  readonly list: DiffRange[] = [];
  add(start: number, end: number): void {
    const last = this.list[this.list.length - 1];
    if (last && last.start + last.length === start) last.length += end - start;
    else this.list.push({ start, length: end - start });
  }
}

/**
 * One piece of the walk, in guest order. Only `read` steps cost I/O: their
 * reads start as soon as the step is planned, while the step before is still
 * being read or compared, so the disk (or the page cache) and the compare
 * overlap.
 */
type Step =
  /** Both sides read as zeros here: nothing to read. */
  | { kind: 'skip'; end: number }
  /** Read what qemu-img reads here: one side or both, in order; what is not zero is compared (or checked for zeros). */
  | { kind: 'read'; offset: number; length: number; sides: Side[] }
  | { kind: 'strict-mismatch'; offset: number }
  | { kind: 'size-warning' };

/**
 * A side to read over a step, with its already-resolved run, which covers the
 * step. A run that reads as zeros is not read, only checked as a read would be.
 */
interface Side {
  side: CompareSide;
  run: Resolved;
}

const isZeroRun = (s: Side) => s.run.mapping.kind === 'zero';

/**
 * Steps holding buffers at once: double buffering, one step's reads running
 * while the one before is compared. Deeper costs more in cache misses than it
 * gains in overlap.
 */
const DEPTH = 2;
/** Reads running at once: two copies from the page cache (or two `Blob` reads) keep two cores busy. */
const READS = 2;
/** Steps planned ahead at most, however many of them are skips. */
const MAX_QUEUED = 64;

const runEnd = (r: Resolved) => r.mapping.offset + r.mapping.length;

/** Runs at most `n` tasks at once, starting them in the order they are given. */
function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (task) => {
    if (running < n) running++;
    else await new Promise<void>((start) => waiting.push(start));
    try {
      return await task();
    } finally {
      // A finished task hands its turn straight to the next one waiting.
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
}

export async function compareImages(a: CompareSide, b: CompareSide, opts: CompareOptions = {}): Promise<CompareReport> {
  const k = kernels();
  const readers = new Map([
    [a, new ImageReader(a.image)],
    [b, new ImageReader(b.image)],
  ]);
  const read = async (side: CompareSide, offset: number, out: Uint8Array) => {
    try {
      return await readers.get(side)!.read(offset, out, opts.signal);
    } catch (e) {
      throw new CompareStepError('read', side.name, offset, e);
    }
  };
  /** Reads one side of a step into `out`, from the run already resolved. */
  const readSide = async ({ side, run }: Side, offset: number, out: Uint8Array) => {
    try {
      const reader = readers.get(side)!;
      if (run.mapping.kind === 'zero') reader.check(run);
      else await reader.fill(run, out, offset);
    } catch (e) {
      throw new CompareStepError('read', side.name, offset, e);
    }
  };
  const sizeA = a.image.size;
  const sizeB = b.image.size;
  const report: CompareReport = { identical: false, sizeA, sizeB, messages: [], ranges: [] };
  const ranges = new Ranges();
  const total = Math.min(sizeA, sizeB);
  const end = Math.max(sizeA, sizeB);
  const found = () => ranges.list.length > 0;
  const mismatch = (offset: number) => report.messages.push(`Content mismatch at offset ${offset}!`);

  /** Records the sectors of [offset, offset + n) where the buffers differ (or `x` is non-zero). */
  const scan = (offset: number, n: number, x: Uint8Array, y: Uint8Array | undefined) => {
    for (let s = 0; s < n; ) {
      const len = Math.min(SECTOR, n - s);
      const differs = y ? k.firstDifference(x.subarray(s, s + len), y.subarray(s, s + len)) >= 0 : !k.isZero(x.subarray(s, s + len));
      if (differs) {
        if (!found()) mismatch(offset + s);
        ranges.add(offset + s, offset + s + len);
        if (!opts.all) return;
      }
      s += len;
    }
  };

  /**
   * qemu-img's walk: block status of both sides, then compare what is not
   * zero on both, at most IO_BUF at a time. A resolved run is kept until the
   * walk leaves it, rather than resolved again for every buffer.
   */
  async function* plan(): AsyncGenerator<Step> {
    let ra: Resolved | undefined;
    let rb: Resolved | undefined;
    let offset = 0;
    while (offset < total) {
      if (!ra || runEnd(ra) <= offset) ra = await status(a, offset, sizeA - offset);
      if (!rb || runEnd(rb) <= offset) rb = await status(b, offset, sizeB - offset);
      if (opts.strict && !sameStatus(ra, rb)) {
        yield { kind: 'strict-mismatch', offset };
        return;
      }
      const zeroA = ra.mapping.kind === 'zero';
      const zeroB = rb.mapping.kind === 'zero';
      const stop = Math.min(runEnd(ra), runEnd(rb));
      if (zeroA && zeroB) {
        yield { kind: 'skip', end: stop };
        offset = stop;
        continue;
      }
      // Where only one side is allocated, qemu-img reads that side alone and checks it for zeros.
      const length = Math.min(stop - offset, IO_BUF);
      const sides = [];
      if (ra.present) sides.push({ side: a, run: ra });
      if (rb.present) sides.push({ side: b, run: rb });
      yield { kind: 'read', offset, length, sides };
      offset += length;
    }
    if (sizeA === sizeB) return;
    yield { kind: 'size-warning' };
    // Past the end of the smaller image only the larger one is read, and must be zero.
    const over = sizeA > sizeB ? a : b;
    let r: Resolved | undefined;
    while (offset < end) {
      if (!r || runEnd(r) <= offset) r = await status(over, offset, end - offset);
      const stop = runEnd(r);
      if (r.mapping.kind === 'zero') {
        yield { kind: 'skip', end: stop };
        offset = stop;
        continue;
      }
      const length = Math.min(stop - offset, IO_BUF);
      yield { kind: 'read', offset, length, sides: [{ side: over, run: r }] };
      offset += length;
    }
  }

  /** Buffer pairs for steps in flight, carved from the kernels' arena. */
  const slots = Array.from({ length: DEPTH }, () => ({ x: k.alloc(IO_BUF), y: k.alloc(IO_BUF) }));
  const free = [...slots];
  interface Queued {
    step: Step | PlanError;
    slot?: (typeof slots)[number];
    /** The step's bytes to compare: one buffer (checked for zeros) or two. */
    data?: Uint8Array[];
    /**
     * Settles when the step's reads are done and the kernel has looked at the
     * bytes: true when they differ somewhere. Rejects with the first read error.
     */
    io?: Promise<boolean>;
  }
  const queue: Queued[] = [];
  const limit = limiter(READS);
  const steps = new PlanReader(plan());

  const enqueue = async () => {
    while (!steps.done && queue.length < MAX_QUEUED && free.length > 0) {
      const step = await steps.next();
      if (!step) return;
      if (step.kind !== 'read') {
        queue.push({ step });
        continue;
      }
      const slot = free.pop()!;
      const { offset, length } = step;
      const bufs = [slot.x, slot.y];
      const reads = step.sides.map((s, i) => limit(() => readSide(s, offset, bufs[i]!.subarray(0, length))));
      const data = step.sides.flatMap((s, i) => (isZeroRun(s) ? [] : [bufs[i]!.subarray(0, length)]));
      const io = Promise.allSettled(reads).then((rs) => {
        // A failure is reported for the side qemu-img reads first.
        for (const r of rs) if (r.status === 'rejected') throw r.reason;
        // Compared the moment the bytes arrive, while they are still in the cache; the verdict waits for its turn.
        const [x, y] = data;
        return x !== undefined && (y ? k.firstDifference(x, y) >= 0 : !k.isZero(x));
      });
      // Awaited in order later; a step after the first difference may never be.
      io.catch(() => {});
      queue.push({ step, slot, data, io });
    }
  };

  /** Compares one step's bytes, in guest order; false when the walk must stop here. */
  const compareStep = async ({ step, data, io }: Queued): Promise<boolean> => {
    throwIfAborted(opts.signal);
    switch (step.kind) {
      case 'skip':
        opts.onProgress?.({ done: step.end, total: end });
        return true;
      case 'error':
        throw step.error;
      case 'strict-mismatch':
        report.messages.push(`Strict mode: Offset ${step.offset} block status mismatch!`);
        return false;
      case 'size-warning':
        report.messages.push('Warning: Image size mismatch!');
        return true;
    }
    const { offset, length } = step;
    // The sector walk only where the kernel found a difference.
    if (await io) scan(offset, length, data![0]!, data![1]);
    opts.onProgress?.({ done: offset + length, total: end });
    return true;
  };

  /** Lets reads still in flight finish before their buffers are used again or freed. */
  const drain = () => Promise.allSettled(queue.splice(0).map((q) => q.io));

  try {
    if (opts.strict && sizeA !== sizeB) {
      report.messages.push('Strict mode: Image size mismatch!');
      return report;
    }
    for (;;) {
      await enqueue();
      const item = queue.shift();
      if (!item) break;
      const more = await compareStep(item);
      if (item.slot) free.push(item.slot);
      if (!more) return report;
      if (!opts.all && found()) break;
    }
    await drain();

    report.identical = !found();
    if (report.identical) report.messages.push('Images are identical.');
    report.ranges = opts.all ? ranges.list : ranges.list.slice(0, 1);
    const buf = slots[0]!.x;
    for (const r of report.ranges) {
      r.hashA = await hashRange(a, r, buf, read);
      r.hashB = await hashRange(b, r, buf, read);
    }
    return report;
  } finally {
    await drain();
    for (const { x, y } of slots) {
      k.free(x);
      k.free(y);
    }
  }
}

/** qemu compares the whole block status; this compares what it is made of. */
function sameStatus(x: Resolved, y: Resolved): boolean {
  const host = (r: Resolved) => r.mapping.kind === 'data' || (r.mapping.kind === 'zero' && r.mapping.host !== undefined);
  return x.present === y.present && (x.mapping.kind === 'zero') === (y.mapping.kind === 'zero') && host(x) === host(y);
}

async function hashRange(
  side: CompareSide,
  r: DiffRange,
  buf: Uint8Array,
  read: (side: CompareSide, offset: number, out: Uint8Array) => Promise<Uint8Array>,
): Promise<string | undefined> {
  if (r.start + r.length > side.image.size) return undefined;
  const h = kernels().xxh32();
  for (let off = r.start; off < r.start + r.length; off += buf.length) {
    const n = Math.min(buf.length, r.start + r.length - off);
    h.update(await read(side, off, buf.subarray(0, n)));
  }
  return xxh32Hex(h.digest());
}
