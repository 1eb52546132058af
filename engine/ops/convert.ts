/**
 * `convert -O raw`: the guest bytes of any image, written sparsely. Ranges the
 * layers report as zero are never read; data is read a chunk at a time into
 * kernel memory and scanned in blocks of `sparseSize` (qemu-img's -S, 4 KiB
 * by default), and only non-zero blocks are written. The length is set last.
 */
import type { Image } from '../image.ts';
import type { ByteSink } from '../io/sink.ts';
import { throwIfAborted } from '../errors.ts';
import { kernels } from '../kernels/index.ts';
import { ImageReader } from './read.ts';
import { resolve } from './resolve.ts';

const CHUNK = 4 * 1024 * 1024;

export interface Progress {
  done: number;
  total: number;
}

export interface ConvertOptions {
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** Zero-detection block size; 0 writes every byte that is not known to be zero. */
  sparseSize?: number;
}

export async function convertToRaw(image: Image, sink: ByteSink, opts: ConvertOptions = {}): Promise<void> {
  const reader = new ImageReader(image);
  const k = kernels();
  const buf = k.alloc(CHUNK);
  const sparse = opts.sparseSize ?? 4096;
  try {
    for (let pos = 0; pos < image.size; ) {
      throwIfAborted(opts.signal, sink.name);
      const end = Math.min(image.size, pos + CHUNK);
      // Fill the chunk mapping by mapping; remember whether anything but zeros came in.
      let sawData = false;
      for (let at = pos; at < end; ) {
        const r = await resolve(image, at, end - at);
        const dest = buf.subarray(at - pos, at - pos + r.mapping.length);
        if (r.mapping.kind === 'zero') dest.fill(0);
        else {
          await reader.fill(r, dest);
          sawData = true;
        }
        at += r.mapping.length;
      }
      if (sawData) await writeNonZero(sink, buf.subarray(0, end - pos), pos, sparse, k.isZero);
      pos = end;
      opts.onProgress?.({ done: pos, total: image.size });
    }
    await sink.commit(image.size);
  } catch (e) {
    await sink.abort();
    throw e;
  } finally {
    k.free(buf);
  }
}

/** Writes the runs of `data` that are not all-zero blocks, one write per run. */
async function writeNonZero(
  sink: ByteSink,
  data: Uint8Array,
  guestOffset: number,
  block: number,
  isZero: (b: Uint8Array) => boolean,
): Promise<void> {
  if (block === 0) {
    await sink.write(guestOffset, data);
    return;
  }
  let runStart = -1;
  for (let off = 0; off < data.length; off += block) {
    const zero = isZero(data.subarray(off, Math.min(data.length, off + block)));
    if (!zero && runStart < 0) runStart = off;
    if (zero && runStart >= 0) {
      await sink.write(guestOffset + runStart, data.subarray(runStart, off));
      runStart = -1;
    }
  }
  if (runStart >= 0) await sink.write(guestOffset + runStart, data.subarray(runStart));
}
