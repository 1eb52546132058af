/**
 * seSparse extents (ESXi's "space-efficient sparse" snapshots, the SESPARSE
 * extent type of a seSparse descriptor). VMware has not published the
 * format; these are the fields qemu 7.2 reads and the strict checks it makes
 * on them, as pure parsers, and the codec for its tagged 64-bit grain
 * directory and grain table entries.
 */
import { ImageFormatError, UnsupportedFeatureError } from '../../errors.ts';
import { u64le, viewOf } from '../common.ts';
import { INVALID, UNALLOCATED, ZEROED, type EntryCodec } from './extents.ts';
import type { SparseGeometry } from './header.ts';
import * as L from './layout.ts';

/** The constant header: u64 fields at these offsets, 512 bytes in all. */
const C = {
  magic: 0,
  version: 8,
  capacity: 16,
  grainSize: 24,
  grainTableSize: 32,
  flags: 40,
  reserved: 48,
  volatileHeaderOffset: 80,
  grainDirOffset: 128,
  grainDirSize: 136,
  grainTablesOffset: 144,
  grainsOffset: 192,
  pad: 208,
} as const;
const CONST_MAGIC = 0xcafebabe;
/** 0x0000000200000001 */
const VERSION_LO = 1;
const VERSION_HI = 2;
/** The only grain size (sectors) and grain table size (sectors) qemu accepts. */
const GRAIN_SECTORS = 8;
const GT_SECTORS = 64;

/** The volatile header: magic, then replay_journal at 24, then zero padding from 32. */
const VOLATILE_MAGIC = 0xcafecafe;
const V_REPLAY_JOURNAL = 24;
const V_PAD = 32;

/** Directory entries for allocated tables carry 0x10000000 in their high word. */
const GD_ALLOCATED_HI = 0x10000000;
/** Table entry types, the top nibble: 0 unallocated, 1 unmapped (reads as zeros), 2 zero, 3 allocated. */
const GT_UNMAPPED = 1;
const GT_ZERO = 2;
const GT_ALLOCATED = 3;

export interface SeSparseHeader {
  /** Sectors. */
  capacity: number;
  volatileHeaderOffset: number;
  gdOffset: number;
  gdSectors: number;
  gtOffset: number;
  grainsOffset: number;
}

const allZero = (b: Uint8Array) => b.every((x) => x === 0);

export function parseConstHeader(bytes: Uint8Array, file: string): SeSparseHeader {
  const v = viewOf(bytes);
  const fail = (offset: number, detail: string) => new ImageFormatError(file, 'seSparse header', offset, detail);
  const unsupported = (what: string) => new UnsupportedFeatureError(file, `seSparse ${what}`);
  if (bytes.length < L.SECTOR) throw fail(0, 'File is too small, not a valid image');
  if (u64le(v, C.magic) !== CONST_MAGIC) throw fail(C.magic, 'Bad const header magic');
  if (v.getUint32(C.version, true) !== VERSION_LO || v.getUint32(C.version + 4, true) !== VERSION_HI) throw unsupported('version');
  if (u64le(v, C.grainSize) !== GRAIN_SECTORS) throw unsupported(`grain size ${u64le(v, C.grainSize)}`);
  if (u64le(v, C.grainTableSize) !== GT_SECTORS) throw unsupported(`grain table size ${u64le(v, C.grainTableSize)}`);
  if (u64le(v, C.flags) !== 0) throw unsupported('flags');
  if (!allZero(bytes.subarray(C.reserved, C.reserved + 32))) throw unsupported('reserved bits');
  if (!allZero(bytes.subarray(C.pad, L.SECTOR))) throw unsupported('non-zero const header padding');
  return {
    capacity: u64le(v, C.capacity),
    volatileHeaderOffset: u64le(v, C.volatileHeaderOffset),
    gdOffset: u64le(v, C.grainDirOffset),
    gdSectors: u64le(v, C.grainDirSize),
    gtOffset: u64le(v, C.grainTablesOffset),
    grainsOffset: u64le(v, C.grainsOffset),
  };
}

export function checkVolatileHeader(bytes: Uint8Array, file: string, at: number): void {
  const v = viewOf(bytes);
  if (bytes.length < L.SECTOR || u64le(v, 0) !== VOLATILE_MAGIC) throw new ImageFormatError(file, 'seSparse volatile header', at, 'Bad volatile header magic');
  if (u64le(v, V_REPLAY_JOURNAL) !== 0) throw new UnsupportedFeatureError(file, 'seSparse journal replay (the image is dirty)');
  if (!allZero(bytes.subarray(V_PAD, L.SECTOR))) throw new UnsupportedFeatureError(file, 'seSparse non-zero volatile header padding');
}

/** qemu's extent shape for seSparse: 4 KiB grains, 4096 u64 entries per grain table. */
export function seSparseGeometry(h: SeSparseHeader, file: string): SparseGeometry {
  const fail = (offset: number, detail: string) => new ImageFormatError(file, 'seSparse header', offset, detail);
  const gtEntries = (GT_SECTORS * L.SECTOR) / 8;
  const gdEntries = (h.gdSectors * L.SECTOR) / 8;
  if (h.capacity * L.SECTOR > Number.MAX_SAFE_INTEGER) throw fail(C.capacity, `capacity of ${h.capacity} sectors is too large`);
  if (gdEntries > L.MAX_GD_ENTRIES) throw fail(C.grainDirSize, 'L1 size too big');
  if (gdEntries * gtEntries * GRAIN_SECTORS < h.capacity) {
    throw fail(C.grainDirSize, `a grain directory of ${gdEntries} entries does not cover the capacity of ${h.capacity} sectors`);
  }
  return { capacity: h.capacity, grainBytes: GRAIN_SECTORS * L.SECTOR, gtEntries, gdEntries, gdOffset: h.gdOffset * L.SECTOR };
}

/**
 * Directory entries: 0, or 0x10000000 in the high word and a table number
 * in the low one. Table entries: the type in the top nibble; an allocated
 * grain's number is split, its low 12 bits in bits 48..59.
 */
export function seSparseEntries(h: SeSparseHeader): EntryCodec {
  return {
    entryBytes: 8,
    table(gd, at) {
      const lo = gd.getUint32(at, true);
      const hi = gd.getUint32(at + 4, true);
      if (lo === 0 && hi === 0) return 0;
      if (hi !== GD_ALLOCATED_HI) return INVALID;
      const sector = h.gtOffset + lo * GT_SECTORS;
      return sector > 0xffffffff ? INVALID : sector * L.SECTOR;
    },
    grain(gt, at) {
      const lo = gt.getUint32(at, true);
      const hi = gt.getUint32(at + 4, true);
      switch (hi >>> 28) {
        case 0:
          return lo === 0 && hi === 0 ? UNALLOCATED : INVALID;
        case GT_UNMAPPED:
        case GT_ZERO:
          return ZEROED;
        case GT_ALLOCATED: {
          const grain = ((hi >>> 16) & 0xfff) + ((hi & 0xffff) * 2 ** 32 + lo) * 4096;
          return (h.grainsOffset + grain * GRAIN_SECTORS) * L.SECTOR;
        }
        default:
          return INVALID;
      }
    },
  };
}
