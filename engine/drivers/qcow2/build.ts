/**
 * Pure builders for the qcow2 structures the writer lays out: the header
 * cluster (header, extensions, backing file name), L1/L2 entries, compressed
 * cluster descriptors and refcount entries of any width. Section names refer
 * to qemu's docs/interop/qcow2.txt.
 */
import { OptionValueError } from '../../errors.ts';
import * as L from './layout.ts';

/** "Header": version 3 headers as qemu writes them: 104 bytes, the compression type byte, padding to 8. */
export const V3_HEADER_LENGTH = 112;
/** "Header extensions": each starts with a 4-byte type and a 4-byte length, data padded to 8 bytes. */
const EXT_HEAD = 8;
/** "Feature name table": 48-byte entries (type, bit number, 46-byte name). */
const FEATURE_ENTRY = 48;
/** "Header": bits 0..55 of a 64-bit entry can hold an offset; the high word keeps bits 32..55. */
const TWO32 = 0x1_0000_0000;

/** The feature bits this writer knows, named as the specification names them. */
const FEATURES: readonly [type: number, bit: number, name: string][] = [
  [0, 0, 'dirty bit'],
  [0, 1, 'corrupt bit'],
  [0, 2, 'external data file'],
  [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'],
  [1, 0, 'lazy refcounts'],
  [2, 0, 'bitmaps'],
  [2, 1, 'raw external data'],
];

export interface HeaderFields {
  version: 2 | 3;
  clusterBits: number;
  size: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  incompatible: number;
  compatible: number;
  refcountOrder: number;
  compressionType: number;
  backing?: { name: string; format?: string };
}

const utf8 = new TextEncoder();

function setU64(v: DataView, at: number, value: number): void {
  v.setUint32(at, Math.floor(value / TWO32));
  v.setUint32(at + 4, value >>> 0);
}

function extension(type: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(EXT_HEAD + Math.ceil(data.length / 8) * 8);
  const v = new DataView(out.buffer);
  v.setUint32(0, type);
  v.setUint32(4, data.length);
  out.set(data, EXT_HEAD);
  return out;
}

function featureTable(): Uint8Array {
  const data = new Uint8Array(FEATURES.length * FEATURE_ENTRY);
  FEATURES.forEach(([type, bit, name], i) => {
    data[i * FEATURE_ENTRY] = type;
    data[i * FEATURE_ENTRY + 1] = bit;
    data.set(utf8.encode(name), i * FEATURE_ENTRY + 2);
  });
  return extension(L.EXT_FEATURE_NAMES, data);
}

/**
 * The header cluster's contents (not padded to the cluster): the header, the
 * backing format extension, the feature name table when it fits (qemu leaves
 * it out of small clusters too), the end marker and the backing file name.
 */
export function buildHeader(f: HeaderFields): Uint8Array {
  const clusterSize = 2 ** f.clusterBits;
  const headerLength = f.version === 3 ? V3_HEADER_LENGTH : L.V2_HEADER_LENGTH;
  const name = f.backing ? utf8.encode(f.backing.name) : new Uint8Array(0);
  const noSpace = () =>
    new OptionValueError(`Could not assign backing file '${f.backing?.name}' with format '${f.backing?.format ?? ''}': No space left on device`);
  if (name.length > L.MAX_BACKING_NAME) throw noSpace();
  const exts: Uint8Array[] = [];
  if (f.backing?.format !== undefined) exts.push(extension(L.EXT_BACKING_FORMAT, utf8.encode(f.backing.format)));
  const fixed = () => headerLength + exts.reduce((n, e) => n + e.length, 0) + EXT_HEAD + name.length;
  if (f.version === 3) {
    const table = featureTable();
    if (fixed() + table.length <= clusterSize) exts.push(table);
  }
  const total = fixed();
  if (total > clusterSize) throw noSpace();

  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  v.setUint32(L.H.magic, L.MAGIC);
  v.setUint32(L.H.version, f.version);
  if (name.length > 0) {
    setU64(v, L.H.backingFileOffset, total - name.length);
    v.setUint32(L.H.backingFileSize, name.length);
  }
  v.setUint32(L.H.clusterBits, f.clusterBits);
  setU64(v, L.H.size, f.size);
  v.setUint32(L.H.l1Size, f.l1Size);
  setU64(v, L.H.l1TableOffset, f.l1TableOffset);
  setU64(v, L.H.refcountTableOffset, f.refcountTableOffset);
  v.setUint32(L.H.refcountTableClusters, f.refcountTableClusters);
  if (f.version === 3) {
    v.setUint32(L.H.incompatibleFeatures + 4, f.incompatible);
    v.setUint32(L.H.compatibleFeatures + 4, f.compatible);
    v.setUint32(L.H.refcountOrder, f.refcountOrder);
    v.setUint32(L.H.headerLength, headerLength);
    out[L.H.compressionType] = f.compressionType;
  }
  let at = headerLength;
  for (const e of exts) {
    out.set(e, at);
    at += e.length;
  }
  // The end-of-extensions marker is the 8 zero bytes at `at`.
  out.set(name, at + EXT_HEAD);
  return out;
}

/** "Cluster mapping": an L1 entry or a standard L2 entry for a cluster with refcount 1 (the "copied" flag). */
export function setCopiedEntry(v: DataView, at: number, hostOffset: number, zero = false): void {
  v.setUint32(at, Math.floor(hostOffset / TWO32) | L.FLAG_COPIED_HI);
  v.setUint32(at + 4, (hostOffset >>> 0) | (zero ? L.FLAG_ZERO_LO : 0));
}

/** "Standard Cluster Descriptor", version 3: no host cluster, reads as zeros. */
export function setZeroEntry(v: DataView, at: number): void {
  v.setUint32(at, 0);
  v.setUint32(at + 4, L.FLAG_ZERO_LO);
}

/**
 * "Compressed Clusters Descriptor": the byte offset of the compressed data in
 * bits 0..x-1 (x = 62 - (cluster_bits - 8)), the number of 512-byte sectors it
 * touches minus one in bits x..61, and bit 62.
 */
export function setCompressedEntry(v: DataView, at: number, hostOffset: number, length: number, clusterBits: number): void {
  const x = 62 - (clusterBits - 8);
  const extraSectors = Math.floor((hostOffset + length - 1) / 512) - Math.floor(hostOffset / 512);
  const value = (1n << 62n) | (BigInt(extraSectors) << BigInt(x)) | BigInt(hostOffset);
  v.setBigUint64(at, value);
}

/**
 * "Extended L2 Entries": the subcluster bitmap after the descriptor;
 * allocation bits in the low word, zero bits in the high word.
 */
export function orSubclusterBits(v: DataView, at: number, alloc: number, zero: number): void {
  v.setUint32(at + 8, (v.getUint32(at + 8) | zero) >>> 0);
  v.setUint32(at + 12, (v.getUint32(at + 12) | alloc) >>> 0);
}

/** Bits [from, to) of a 32-bit subcluster bitmap. */
export function subclusterMask(from: number, to: number): number {
  if (to <= from) return 0;
  const upper = to >= 32 ? 0xffffffff : (1 << to) - 1;
  return (upper & ~((1 << from) - 1)) >>> 0;
}

/**
 * "Refcount block entries": entry `index` of a refcount block of
 * 2^refcountOrder-bit entries. Entries narrower than a byte fill each byte
 * from its least significant bit; wider ones are big-endian.
 */
export function getRefcount(block: Uint8Array, index: number, refcountOrder: number): number {
  const bits = 2 ** refcountOrder;
  if (bits < 8) {
    const perByte = 8 / bits;
    return (block[Math.floor(index / perByte)]! >> ((index % perByte) * bits)) & ((1 << bits) - 1);
  }
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const at = index * (bits / 8);
  if (bits === 8) return v.getUint8(at);
  if (bits === 16) return v.getUint16(at);
  if (bits === 32) return v.getUint32(at);
  return v.getUint32(at) * TWO32 + v.getUint32(at + 4);
}

export function setRefcount(block: Uint8Array, index: number, refcountOrder: number, value: number): void {
  const bits = 2 ** refcountOrder;
  if (bits < 8) {
    const perByte = 8 / bits;
    const shift = (index % perByte) * bits;
    const i = Math.floor(index / perByte);
    block[i] = (block[i]! & ~(((1 << bits) - 1) << shift)) | (value << shift);
    return;
  }
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const at = index * (bits / 8);
  if (bits === 8) v.setUint8(at, value);
  else if (bits === 16) v.setUint16(at, value);
  else if (bits === 32) v.setUint32(at, value);
  else setU64(v, at, value);
}

/** The largest refcount an entry of 2^refcountOrder bits holds (capped where JavaScript numbers stay exact). */
export function maxRefcount(refcountOrder: number): number {
  return refcountOrder >= 6 ? Number.MAX_SAFE_INTEGER : 2 ** 2 ** refcountOrder - 1;
}

/** "Host cluster management": a refcount table entry. */
export function setTableEntry(v: DataView, at: number, hostOffset: number): void {
  setU64(v, at, hostOffset);
}
