/**
 * Pure parser for the Parallels header: bytes in, a structure out, or a typed
 * error. The checks and their wording follow qemu 7.2 (parallels_open and the
 * block layer's size limit), so an image qemu-img refuses is refused here for
 * the same reason; checks against the file size are the driver's.
 */
import { ImageFormatError, UnsupportedFeatureError } from '../../errors.ts';
import { md5 } from '../../codecs/md5.ts';
import { viewOf } from '../common.ts';
import * as L from './layout.ts';

export interface ParallelsHeader {
  /** True for "WithouFreSpacExt" images. */
  extended: boolean;
  /** Cluster size in sectors. */
  tracks: number;
  batEntries: number;
  /** Guest size in bytes. */
  size: number;
  /** Bytes per unit of a BAT entry: a sector in the original format, a cluster in the extended one. */
  batUnit: number;
  /** The image was not closed cleanly (qemu-img check reports it; info does not). */
  inUse: boolean;
  /** Byte offset of the Format Extension cluster, 0 when there is none. */
  extOffset: bigint;
}

const ascii = new TextDecoder('latin1');

/** Parses the 64-byte header at the start of the file (zero-padded when the file is shorter). */
export function parseHeader(bytes: Uint8Array, file: string): ParallelsHeader {
  const bad = (at: number, detail: string) => new ImageFormatError(file, 'Parallels header', at, detail);
  if (bytes.length < L.HEADER_BYTES) throw bad(0, 'file is shorter than a Parallels header');
  const v = viewOf(bytes);
  const u32 = (at: number) => v.getUint32(at, true);
  const magic = ascii.decode(bytes.subarray(L.H.magic, L.H.magic + 16));
  if (u32(L.H.version) !== L.VERSION || (magic !== L.MAGIC && magic !== L.MAGIC_EXT)) {
    throw bad(L.H.magic, 'Image not in Parallels format');
  }
  const extended = magic === L.MAGIC_EXT;
  // The original format keeps the size in the low 32 bits only.
  let sectors = v.getBigUint64(L.H.nbSectors, true);
  if (!extended) sectors &= 0xffffffffn;

  const tracks = u32(L.H.tracks);
  if (tracks === 0) throw bad(L.H.tracks, 'Invalid image: Zero sectors per track');
  if (tracks > L.MAX_TRACKS) throw bad(L.H.tracks, 'Invalid image: Too big cluster');
  const batEntries = u32(L.H.batEntries);
  if (batEntries > L.MAX_BAT_ENTRIES) throw bad(L.H.batEntries, 'Catalog too large');

  const bytesSize = sectors * BigInt(L.SECTOR);
  if (bytesSize > L.MAX_LENGTH) throw bad(L.H.nbSectors, `disk size of ${sectors} sectors is too large (File too large)`);
  if (bytesSize > BigInt(Number.MAX_SAFE_INTEGER)) throw new UnsupportedFeatureError(file, `Parallels disk size of ${bytesSize} bytes (above 2^53)`);

  return {
    extended,
    tracks,
    batEntries,
    size: Number(bytesSize),
    batUnit: (extended ? tracks : 1) * L.SECTOR,
    inUse: u32(L.H.inUse) === L.IN_USE,
    extOffset: v.getBigUint64(L.H.extOff, true) * BigInt(L.SECTOR),
  };
}

const FEATURE_HEADER_BYTES = 24;
const BITMAP_FEATURE_BYTES = 32;

/**
 * Checks the Format Extension cluster as qemu does before it opens the image
 * ("Format Extension"): the magic, the MD5 of the rest of the cluster, then
 * each feature (only dirty bitmaps are known) up to the end marker. Dirty
 * bitmaps say nothing about the guest data, so nothing is kept from them.
 */
export function checkExtension(cluster: Uint8Array, file: string, offset: number, diskSectors: number): void {
  const bad = (at: number, detail: string) => new ImageFormatError(file, 'Parallels Format Extension', offset + at, detail);
  const v = viewOf(cluster);
  const magic = v.getBigUint64(0, true);
  if (magic !== L.EXT_MAGIC) {
    throw bad(0, `Wrong parallels Format Extension magic: 0x${magic.toString(16)}, expected: 0x${L.EXT_MAGIC.toString(16)}`);
  }
  const sum = md5(cluster.subarray(L.EXT_HEADER_BYTES));
  if (sum.some((b, i) => b !== cluster[8 + i])) throw bad(8, 'Wrong checksum in Format Extension header. Format extension is corrupted.');

  const ids = new Set<string>();
  let pos = L.EXT_HEADER_BYTES;
  for (;;) {
    const remaining = cluster.length - pos;
    if (remaining < FEATURE_HEADER_BYTES) {
      throw bad(pos, `Can not read feature header, as remaining bytes (${remaining}) in Format Extension is less than Feature header size (${FEATURE_HEADER_BYTES})`);
    }
    const featureMagic = v.getBigUint64(pos, true);
    const flags = v.getBigUint64(pos + 8, true);
    const dataSize = v.getUint32(pos + 16, true);
    const data = pos + FEATURE_HEADER_BYTES;
    if (flags !== 0n) throw bad(pos, 'Flags for extension feature are unsupported');
    if (Math.ceil(dataSize / 8) * 8 > cluster.length - data) throw bad(pos, 'Feature data_size exceedes Format Extension cluster');
    if (featureMagic === L.EXT_END) return;
    if (featureMagic !== L.EXT_DIRTY_BITMAP) throw bad(pos, `Unknown feature: 0x${featureMagic.toString(16)}`);
    checkBitmap(cluster.subarray(data, data + dataSize), (detail) => bad(data, detail), diskSectors, cluster.length, ids);
    pos = data + Math.ceil(dataSize / 8) * 8;
  }
}

/** "Dirty bitmaps feature": the checks qemu makes before it loads one. */
function checkBitmap(data: Uint8Array, bad: (detail: string) => ImageFormatError, diskSectors: number, clusterSize: number, ids: Set<string>): void {
  if (data.length < BITMAP_FEATURE_BYTES) {
    throw bad(`Too small Bitmap Feature area in Parallels Format Extension: ${data.length} bytes, expected at least ${BITMAP_FEATURE_BYTES} bytes`);
  }
  const v = viewOf(data);
  const sectors = v.getBigUint64(0, true);
  if (sectors !== BigInt(diskSectors)) throw bad(`Bitmap size (in sectors) ${sectors} differs from disk size in sectors ${diskSectors}`);
  const granularity = v.getUint32(24, true) * L.SECTOR;
  if (granularity < L.SECTOR || granularity > 0xffffffff || (granularity & (granularity - 1)) !== 0) {
    throw bad(`Invalid bitmap granularity ${granularity}, expected a power of two of at least ${L.SECTOR} bytes`);
  }
  const l1Size = v.getUint32(28, true);
  if (l1Size * 8 > data.length - BITMAP_FEATURE_BYTES) throw bad('Bitmaps feature corrupted: l1 table exceeds extension data_size');
  const id = uuidString(data.subarray(8, 24));
  if (ids.has(id)) throw bad(`Bitmap already exists: ${id}`);
  ids.add(id);
  // qemu's serialisation of a bitmap: one bit per granule, in 64-bit words, over clusters of the L1 table.
  const words = Math.ceil(Math.ceil((diskSectors * L.SECTOR) / granularity) / 64);
  const tableSize = Math.ceil((words * 8) / clusterSize);
  if (tableSize !== l1Size) {
    throw bad(`Bitmap table size ${l1Size} does not correspond to bitmap size and cluster size. Expected ${tableSize}`);
  }
}

function uuidString(b: Uint8Array): string {
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
