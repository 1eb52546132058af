/**
 * Pure parsers for the binary VMDK structures: the hosted sparse extent
 * header (KDMV) and its footer copy, the older COWD header, grain markers,
 * and the geometry checks qemu applies before it trusts a sparse extent.
 * They take bytes and return structures or throw `ImageFormatError`.
 */
import { ImageFormatError, UnsupportedFeatureError } from '../../errors.ts';
import { u64le, viewOf } from '../common.ts';
import * as L from './layout.ts';

export interface SparseHeader {
  version: number;
  flags: number;
  /** Sectors. */
  capacity: number;
  grainSectors: number;
  /** Sectors; 0 when there is no embedded descriptor. */
  descriptorOffset: number;
  gtesPerGT: number;
  /** Sectors; meaningless when `gdAtEnd`. */
  gdOffset: number;
  gdAtEnd: boolean;
  /** Sectors of metadata before the first grain ("overHead", qemu's grain_offset). */
  overHead: number;
  compressAlgorithm: number;
}

/** The shape of a sparse extent once its header is checked: what the grain lookups need. */
export interface SparseGeometry {
  /** Sectors the extent covers. */
  capacity: number;
  grainBytes: number;
  gtEntries: number;
  gdEntries: number;
  /** Bytes. */
  gdOffset: number;
}

/** Parses the KDMV header at the start of `bytes` (at least `H.length` bytes). */
export function parseSparseHeader(bytes: Uint8Array, file: string, at = 0): SparseHeader {
  if (bytes.length < L.H.length) throw new ImageFormatError(file, 'VMDK sparse header', at, 'File is too small, not a valid image');
  const v = viewOf(bytes);
  if (v.getUint32(L.H.magic) !== L.MAGIC_KDMV) throw new ImageFormatError(file, 'VMDK sparse header', at, 'Image not in VMDK format');
  return {
    version: v.getUint32(L.H.version, true),
    flags: v.getUint32(L.H.flags, true),
    capacity: u64le(v, L.H.capacity),
    grainSectors: u64le(v, L.H.grainSize),
    descriptorOffset: u64le(v, L.H.descriptorOffset),
    gtesPerGT: v.getUint32(L.H.numGTEsPerGT, true),
    gdOffset: u64le(v, L.H.gdOffset),
    gdAtEnd: v.getUint32(L.H.gdOffset, true) === L.GD_AT_END_LO && v.getUint32(L.H.gdOffset + 4, true) === L.GD_AT_END_HI,
    overHead: u64le(v, L.H.overHead),
    compressAlgorithm: v.getUint16(L.H.compressAlgorithm, true),
  };
}

/**
 * "The Footer": the last three sectors of a stream-optimized file are a
 * footer marker, a copy of the header whose gdOffset is valid, and the
 * end-of-stream marker. qemu checks exactly these fields.
 */
export function parseFooter(bytes: Uint8Array, file: string, at: number): SparseHeader {
  const v = viewOf(bytes);
  const eos = 2 * L.SECTOR;
  const valid =
    bytes.length >= L.FOOTER_BYTES &&
    v.getUint32(L.MARKER.size, true) === 0 &&
    v.getUint32(L.MARKER.type, true) === L.MARKER_FOOTER &&
    v.getUint32(L.SECTOR) === L.MAGIC_KDMV &&
    u64le(v, eos + L.MARKER.value) === 0 &&
    v.getUint32(eos + L.MARKER.size, true) === 0 &&
    v.getUint32(eos + L.MARKER.type, true) === L.MARKER_EOS;
  if (!valid) throw new ImageFormatError(file, 'VMDK footer', at, 'Invalid footer');
  return parseSparseHeader(bytes.subarray(L.SECTOR), file, at + L.SECTOR);
}

/** qemu's checks of a KDMV header (vmdk_open_vmdk4 and vmdk_add_extent), plus the bounds a JavaScript number needs. */
export function sparseGeometry(h: SparseHeader, fileSize: number, file: string, at: number): SparseGeometry {
  const fail = (offset: number, detail: string) => new ImageFormatError(file, 'VMDK sparse header', at + offset, detail);
  if (h.version > L.MAX_VERSION) throw new UnsupportedFeatureError(file, `VMDK version ${h.version}`);
  if (h.gtesPerGT > L.MAX_GTES_PER_GT) throw fail(L.H.numGTEsPerGT, 'L2 table size too big');
  // qemu multiplies into 32 bits.
  const gtSpan = Math.imul(h.gtesPerGT, h.grainSectors % 2 ** 32) >>> 0;
  if (gtSpan === 0) throw fail(L.H.numGTEsPerGT, 'L1 entry size is invalid');
  if (h.capacity * L.SECTOR > Number.MAX_SAFE_INTEGER) throw fail(L.H.capacity, `capacity of ${h.capacity} sectors is too large`);
  if (Math.ceil(fileSize / L.SECTOR) < h.overHead) {
    throw fail(L.H.overHead, `File truncated, expecting at least ${h.overHead * L.SECTOR} bytes`);
  }
  return checkedGeometry(h.capacity, h.grainSectors, h.gtesPerGT, Math.ceil(h.capacity / gtSpan), h.gdOffset, file, at, L.H.grainSize);
}

export interface CowdHeader {
  capacity: number;
  grainSectors: number;
  gdOffset: number;
  gdEntries: number;
}

/** The COWD (ESX sparse, vmfsSparse) header: u32 fields, 4096 entries per grain table. */
export function parseCowdHeader(bytes: Uint8Array, file: string): CowdHeader {
  if (bytes.length < L.COWD.length) throw new ImageFormatError(file, 'VMDK COWD header', 0, 'File is too small, not a valid image');
  const v = viewOf(bytes);
  return {
    capacity: v.getUint32(L.COWD.capacity, true),
    grainSectors: v.getUint32(L.COWD.grainSize, true),
    gdOffset: v.getUint32(L.COWD.gdOffset, true),
    gdEntries: v.getUint32(L.COWD.numGDEntries, true),
  };
}

export function cowdGeometry(h: CowdHeader, file: string): SparseGeometry {
  return checkedGeometry(h.capacity, h.grainSectors, L.COWD_GTES_PER_GT, h.gdEntries, h.gdOffset, file, 0, L.COWD.grainSize);
}

/**
 * vmdk_add_extent's limits, and what qemu finds only when a read fails: a
 * grain size of zero (qemu divides by it) and a grain directory too short
 * for the capacity (qemu's lookups return an I/O error there).
 */
function checkedGeometry(
  capacity: number,
  grainSectors: number,
  gtEntries: number,
  gdEntries: number,
  gdOffsetSectors: number,
  file: string,
  at: number,
  grainField: number,
): SparseGeometry {
  const fail = (detail: string) => new ImageFormatError(file, 'VMDK sparse header', at + grainField, detail);
  if (grainSectors > L.MAX_GRAIN_SECTORS) throw fail('Invalid granularity, image may be corrupt');
  if (grainSectors === 0) throw fail('grain size is zero');
  if (gdEntries > L.MAX_GD_ENTRIES) throw fail('L1 size too big');
  if (gdEntries * gtEntries * grainSectors < capacity) {
    throw fail(`a grain directory of ${gdEntries} entries does not cover the capacity of ${capacity} sectors`);
  }
  return { capacity, grainBytes: grainSectors * L.SECTOR, gtEntries, gdEntries, gdOffset: gdOffsetSectors * L.SECTOR };
}

/** The compressed size stored in a grain marker (the data follows the 12-byte marker). */
export function grainMarkerSize(bytes: Uint8Array): number {
  return viewOf(bytes).getUint32(L.MARKER.size, true);
}
