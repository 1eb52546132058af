/**
 * Compressing units for writers that store them compressed. The platform
 * provides a `Compressor` that runs in parallel (worker threads in the CLI,
 * Web Workers in the browser); output must be deterministic for the same
 * input, so a conversion gives the same bytes every time.
 */
import { zlibSync } from 'fflate';
import type { Codec } from '../writer.ts';
import { UnsupportedFeatureError } from '../errors.ts';

export interface Compressor {
  compress(data: Uint8Array, codec: Codec): Promise<Uint8Array>;
  /** Frees workers; the compressor is not used afterwards. */
  close(): void;
}

/**
 * The in-thread fallback: zlib through fflate. fflate's window is 32 KiB, too
 * far for qemu's 4 KiB-window inflate, so `deflate-raw-4k` needs a platform
 * compressor.
 */
export const inlineCompressor: Compressor = {
  async compress(data, codec) {
    if (codec === 'zlib') return zlibSync(data, { level: 6 });
    throw new UnsupportedFeatureError('', 'compressing qcow2 clusters without a platform compressor');
  },
  close() {},
};
