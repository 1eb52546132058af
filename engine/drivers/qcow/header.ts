/**
 * Pure parsers for qcow (version 1) metadata: the header, the backing file
 * name and L2 entries. They take bytes and return structures or throw typed
 * errors worded as qemu words its refusals; fetching the bytes is the
 * driver's job.
 */
import { ImageFormatError, UnsupportedFeatureError } from '../../errors.ts';
import { u64be, viewOf } from '../common.ts';
import * as L from './layout.ts';

export interface QcowHeader {
  backingFileOffset: number;
  backingFileSize: number;
  /** Guest size in bytes as stored (qemu uses whole sectors of it). */
  size: number;
  clusterBits: number;
  l2Bits: number;
  l1TableOffset: number;
  /** L1 entries: enough to cover `size`, as the format does not store it. */
  l1Size: number;
}

/** Parses and checks the 48-byte header, in the order qemu checks it. */
export function parseHeader(bytes: Uint8Array, file: string): QcowHeader {
  const fail = (offset: number, detail: string) => new ImageFormatError(file, 'qcow header', offset, detail);
  if (bytes.length < L.HEADER_LENGTH) throw fail(0, 'file is shorter than a qcow header');
  const v = viewOf(bytes);
  if (v.getUint32(L.H.magic) !== L.MAGIC) throw fail(L.H.magic, 'Image not in qcow format');
  const version = v.getUint32(L.H.version);
  if (version !== L.VERSION) throw new UnsupportedFeatureError(file, `qcow version ${version} (qcow (v1) reads version 1; try the 'qcow2' driver)`);

  const sizeHi = v.getUint32(L.H.size);
  const size = u64be(v, L.H.size);
  if (sizeHi === 0 && v.getUint32(L.H.size + 4) <= 1) throw fail(L.H.size, 'Image size is too small (must be at least 2 bytes)');
  const clusterBits = v.getUint8(L.H.clusterBits);
  if (clusterBits < L.MIN_CLUSTER_BITS || clusterBits > L.MAX_CLUSTER_BITS) throw fail(L.H.clusterBits, 'Cluster size must be between 512 and 64k');
  const l2Bits = v.getUint8(L.H.l2Bits);
  if (l2Bits < L.MIN_L2_BITS || l2Bits > L.MAX_L2_BITS) throw fail(L.H.l2Bits, 'L2 table size must be between 512 and 64k');

  const crypt = v.getUint32(L.H.cryptMethod);
  if (crypt === L.CRYPT_AES) throw new UnsupportedFeatureError(file, 'AES-encrypted qcow image');
  if (crypt !== L.CRYPT_NONE) throw fail(L.H.cryptMethod, 'invalid encryption method in qcow header');

  // Sizes past 2^53 bytes cannot be addressed exactly; qemu's own limit (an L1 table of INT_MAX bytes) is the other bound.
  const l1Size = Math.ceil(size / 2 ** (clusterBits + l2Bits));
  if (sizeHi >= 0x20_0000 || l1Size > L.MAX_L1_ENTRIES) throw fail(L.H.size, `Image too large (${size} bytes)`);

  const h: QcowHeader = {
    backingFileOffset: u64be(v, L.H.backingFileOffset),
    backingFileSize: v.getUint32(L.H.backingFileSize),
    size,
    clusterBits,
    l2Bits,
    l1TableOffset: u64be(v, L.H.l1TableOffset),
    l1Size,
  };
  if (h.backingFileOffset !== 0 && h.backingFileSize > L.MAX_BACKING_NAME) throw fail(L.H.backingFileSize, 'Backing file name too long');
  return h;
}

const text = new TextDecoder('utf-8');

/** The backing file name: the stored bytes up to the first NUL, as qemu reads it into a C string; empty means none. */
export function parseBackingName(bytes: Uint8Array): string | undefined {
  const nul = bytes.indexOf(0);
  const name = text.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
  return name === '' ? undefined : name;
}

/** One L2 entry: unallocated, a data cluster, or a compressed cluster. */
export type L2Entry =
  | { kind: 'unallocated' }
  | { kind: 'data'; hostOffset: number }
  | { kind: 'compressed'; hostOffset: number; hostLength: number };

/**
 * Decodes the L2 entry at `at` in `table`. A compressed entry holds its size
 * in bytes in the cluster_bits bits under the flag, and its host offset in
 * the bits under those (qemu's cluster_offset_mask).
 */
export function parseL2Entry(table: DataView, at: number, clusterBits: number): L2Entry {
  const hi = table.getUint32(at);
  const lo = table.getUint32(at + 4);
  if (hi & L.FLAG_COMPRESSED_HI) {
    const shift = 63 - clusterBits - 32;
    const hostOffset = (hi & ((1 << shift) - 1)) * 0x1_0000_0000 + lo;
    const hostLength = (hi >>> shift) & ((1 << clusterBits) - 1);
    return { kind: 'compressed', hostOffset, hostLength };
  }
  const hostOffset = hi * 0x1_0000_0000 + lo;
  return hostOffset === 0 ? { kind: 'unallocated' } : { kind: 'data', hostOffset };
}
