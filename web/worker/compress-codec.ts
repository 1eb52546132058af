/**
 * The browser's unit compressor, one call per unit: pako with fixed
 * parameters, so the same unit always packs to the same bytes whichever
 * worker packs it. `deflate-raw-4k` keeps every match within 4 KiB because
 * qemu inflates qcow2 clusters with windowBits -12; `zlib` is RFC 1950 for
 * stream-optimized VMDK grains.
 */
import { deflate, deflateRaw } from 'pako';
import type { Codec } from '../../engine/writer.ts';

export function compressUnit(data: Uint8Array, codec: Codec): Uint8Array {
  return codec === 'zlib' ? deflate(data, { level: 6 }) : deflateRaw(data, { level: 6, windowBits: 12, memLevel: 9 });
}
