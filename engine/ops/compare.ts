/**
 * `compare`: are two images' guest contents the same? qemu-img compare's
 * rules — unallocated reads as zero, a size difference is allowed when the
 * extra tail is zero, strict mode also compares allocation — walked the way
 * qemu-img walks them, so verdicts and reported offsets match. Beyond it:
 * with `all`, every differing range (at 512-byte sector granularity) and an
 * xxHash32 of each side of it, for reports.
 */
import type { Image } from '../image.ts';
import { throwIfAborted, VDiskError } from '../errors.ts';
import { kernels } from '../kernels/index.ts';
import { Xxh32, xxh32Hex } from '../kernels/xxh32.ts';
import { ImageReader } from './read.ts';
import { resolve, type Resolved } from './resolve.ts';
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

export async function compareImages(a: CompareSide, b: CompareSide, opts: CompareOptions = {}): Promise<CompareReport> {
  const k = kernels();
  const bufA = k.alloc(IO_BUF);
  const bufB = k.alloc(IO_BUF);
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

  try {
    if (opts.strict && sizeA !== sizeB) {
      report.messages.push('Strict mode: Image size mismatch!');
      return report;
    }
    let offset = 0;
    while (offset < total && (opts.all || !found())) {
      throwIfAborted(opts.signal);
      const ra = await status(a, offset, sizeA - offset);
      const rb = await status(b, offset, sizeB - offset);
      let chunk = Math.min(ra.mapping.length, rb.mapping.length);
      if (opts.strict && !sameStatus(ra, rb)) {
        report.messages.push(`Strict mode: Offset ${offset} block status mismatch!`);
        return report;
      }
      const zeroA = ra.mapping.kind === 'zero';
      const zeroB = rb.mapping.kind === 'zero';
      if (!(zeroA && zeroB)) {
        chunk = Math.min(chunk, IO_BUF);
        if (ra.present === rb.present) {
          if (ra.present) {
            await read(a, offset, bufA.subarray(0, chunk));
            await read(b, offset, bufB.subarray(0, chunk));
            // Skip the sector walk where the kernel finds the chunks equal.
            if (k.firstDifference(bufA.subarray(0, chunk), bufB.subarray(0, chunk)) >= 0) scan(offset, chunk, bufA, bufB);
          }
        } else {
          const side = ra.present ? a : b;
          await read(side, offset, bufA.subarray(0, chunk));
          if (!k.isZero(bufA.subarray(0, chunk))) scan(offset, chunk, bufA, undefined);
        }
      }
      offset += chunk;
      opts.onProgress?.({ done: offset, total: end });
    }

    if (sizeA !== sizeB && (opts.all || !found())) {
      report.messages.push('Warning: Image size mismatch!');
      const over = sizeA > sizeB ? a : b;
      while (offset < end && (opts.all || !found())) {
        throwIfAborted(opts.signal);
        const r = await status(over, offset, end - offset);
        let chunk = r.mapping.length;
        if (r.present && r.mapping.kind !== 'zero') {
          chunk = Math.min(chunk, IO_BUF);
          await read(over, offset, bufA.subarray(0, chunk));
          if (!k.isZero(bufA.subarray(0, chunk))) scan(offset, chunk, bufA, undefined);
        }
        offset += chunk;
        opts.onProgress?.({ done: offset, total: end });
      }
    }

    report.identical = !found();
    if (report.identical) report.messages.push('Images are identical.');
    report.ranges = opts.all ? ranges.list : ranges.list.slice(0, 1);
    for (const r of report.ranges) {
      r.hashA = await hashRange(a, r, bufA, read);
      r.hashB = await hashRange(b, r, bufA, read);
    }
    return report;
  } finally {
    k.free(bufA);
    k.free(bufB);
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
  const h = new Xxh32();
  for (let off = r.start; off < r.start + r.length; off += buf.length) {
    const n = Math.min(buf.length, r.start + r.length - off);
    h.update(await read(side, off, buf.subarray(0, n)));
  }
  return xxh32Hex(h.digest());
}
