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
  // The buffer holds guest bytes [bufStart, bufStart + bufLen), gathered from consecutive data mappings.
  let bufStart = 0;
  let bufLen = 0;
  const flush = async () => {
    if (bufLen > 0) await writeNonZero(sink, buf.subarray(0, bufLen), bufStart, sparse, k.isZero);
    bufLen = 0;
  };
  try {
    for (let pos = 0; pos < image.size; ) {
      throwIfAborted(opts.signal, sink.name);
      const r = await resolve(image, pos, image.size - pos);
      if (r.mapping.kind === 'zero') {
        // Zeros are never read, filled or written: the file is sparse there.
        await flush();
        pos += r.mapping.length;
      } else {
        if (bufLen === 0) bufStart = pos;
        const take = Math.min(r.mapping.length, CHUNK - bufLen);
        await reader.fill({ ...r, mapping: { ...r.mapping, length: take } }, buf.subarray(bufLen, bufLen + take));
        bufLen += take;
        pos += take;
        if (bufLen === CHUNK) await flush();
      }
      opts.onProgress?.({ done: pos, total: image.size });
    }
    await flush();
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
