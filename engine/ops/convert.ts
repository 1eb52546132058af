/**
 * `convert`: the guest bytes of any image, into any writer. The source is read
 * once, a chunk at a time, into kernel memory. Ranges its layers report as
 * zero are never read. Each unit of the writer's size is then data (handed
 * over in runs), zero (left out, so the output stays sparse — qemu-img's -S,
 * 4 KiB by default) or, over a backing file (-B), equal to the backing file
 * (left out) or zero where the backing file is not (recorded as zero). Units
 * are compressed in parallel when the writer stores them compressed.
 */
import type { Image } from '../image.ts';
import type { BlockWriter } from '../writer.ts';
import type { Compressor } from '../codecs/compress.ts';
import { throwIfAborted } from '../errors.ts';
import { kernels } from '../kernels/index.ts';
import { ImageReader } from './read.ts';
import { resolve } from './resolve.ts';

/** Bytes read per step; a whole number of units (writers' units are at most 4 MiB). */
const CHUNK = 4 * 1024 * 1024;

export interface Progress {
  done: number;
  total: number;
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
}

/** What one unit becomes in the output. */
const enum Unit {
  Skip,
  Data,
  Zero,
}

export async function convertImage(image: Image, writer: BlockWriter, opts: ConvertOptions = {}): Promise<void> {
  const k = kernels();
  const unit = writer.blockSize;
  const chunk = Math.max(unit, CHUNK - (CHUNK % unit));
  const buf = k.alloc(chunk);
  const backingBuf = opts.backing ? k.alloc(chunk) : undefined;
  const reader = new ImageReader(image);
  const backingReader = opts.backing ? new ImageReader(opts.backing) : undefined;
  const sparse = opts.sparseSize ?? 4096;
  const size = image.size;
  try {
    for (let pos = 0; pos < size; ) {
      throwIfAborted(opts.signal);
      // A zero run that reaches past the next unit boundary is skipped without reading.
      if (!opts.backing) {
        const r = await resolve(image, pos, size - pos);
        if (r.mapping.kind === 'zero') {
          const end = pos + r.mapping.length;
          const skipTo = end >= size ? size : end - (end % unit);
          if (skipTo > pos) {
            pos = skipTo;
            opts.onProgress?.({ done: pos, total: size });
            continue;
          }
        }
      }
      const len = Math.min(chunk, size - pos);
      const data = buf.subarray(0, len);
      const saidZero = await fillChunk(image, reader, pos, data, unit);
      const kinds = classify(data, saidZero, unit, sparse, k.isZero);
      if (opts.backing && backingReader && backingBuf) {
        const theirs = backingBuf.subarray(0, len);
        await backingReader.read(pos, theirs.subarray(0, Math.max(0, Math.min(len, opts.backing.size - pos))));
        theirs.fill(0, Math.max(0, Math.min(len, opts.backing.size - pos)));
        for (let i = 0; i < kinds.length; i++) {
          const a = data.subarray(i * unit, Math.min(len, (i + 1) * unit));
          const b = theirs.subarray(i * unit, Math.min(len, (i + 1) * unit));
          if (k.firstDifference(a, b) < 0) kinds[i] = Unit.Skip;
          else if (k.isZero(a)) kinds[i] = Unit.Zero;
          else kinds[i] = Unit.Data;
        }
      }
      await emit(writer, data, pos, kinds, unit, opts.compressor);
      pos += len;
      opts.onProgress?.({ done: pos, total: size });
    }
    await writer.finish();
  } catch (e) {
    await writer.abort();
    throw e;
  } finally {
    k.free(buf);
    if (backingBuf) k.free(backingBuf);
  }
}

/**
 * Reads [pos, pos + out.length) mapping by mapping; returns, per unit, how
 * many of its bytes the source says are zero (those are never read).
 */
async function fillChunk(image: Image, reader: ImageReader, pos: number, out: Uint8Array, unit: number): Promise<Uint32Array> {
  const saidZero = new Uint32Array(Math.ceil(out.length / unit));
  for (let at = 0; at < out.length; ) {
    const r = await resolve(image, pos + at, out.length - at);
    const end = at + r.mapping.length;
    if (r.mapping.kind === 'zero') {
      out.fill(0, at, end);
      for (let u = Math.floor(at / unit); u * unit < end; u++) saidZero[u]! += Math.min(end, (u + 1) * unit) - Math.max(at, u * unit);
    } else await reader.fill(r, out.subarray(at, end));
    at = end;
  }
  return saidZero;
}

/**
 * Data or not, per unit: a unit the source says is zero is left out; so is
 * an all-zero unit in a zero run of at least `sparse` bytes (-S).
 */
function classify(data: Uint8Array, saidZero: Uint32Array, unit: number, sparse: number, isZero: (b: Uint8Array) => boolean): Unit[] {
  const n = saidZero.length;
  const kinds: Unit[] = new Array(n);
  const zero: boolean[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const from = i * unit;
    const to = Math.min(data.length, from + unit);
    const said = saidZero[i] === to - from;
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

/** Hands the chunk's units to the writer: runs of data, compressed units in parallel, zero ranges. */
async function emit(writer: BlockWriter, data: Uint8Array, pos: number, kinds: Unit[], unit: number, compressor?: Compressor): Promise<void> {
  const slice = (i: number, j: number) => data.subarray(i * unit, Math.min(data.length, j * unit));
  if (writer.codec && compressor) {
    const packed = kinds.map((kind, i) => (kind === Unit.Data ? compressor.compress(slice(i, i + 1), writer.codec!) : undefined));
    for (let i = 0; i < kinds.length; i++) {
      if (kinds[i] === Unit.Data) await writer.writeCompressed(pos + i * unit, await packed[i]!, slice(i, i + 1));
      else if (kinds[i] === Unit.Zero) await writer.writeZero(pos + i * unit, slice(i, i + 1).length);
    }
    return;
  }
  for (let i = 0; i < kinds.length; ) {
    let j = i + 1;
    while (j < kinds.length && kinds[j] === kinds[i]) j++;
    if (kinds[i] === Unit.Data) await writer.write(pos + i * unit, slice(i, j));
    else if (kinds[i] === Unit.Zero) await writer.writeZero(pos + i * unit, slice(i, j).length);
    i = j;
  }
}
