/**
 * Pure parsers for the VHDX header section and metadata region: the two
 * headers (and which one is current), the region table, the metadata table
 * and its known items, and the parent locator. They take bytes and return
 * structures, or throw `ImageFormatError` / `UnsupportedFeatureError`;
 * reading the bytes is the driver's job.
 */
import { ImageFormatError, UnsupportedFeatureError } from '../../errors.ts';
import { crc32c } from '../../codecs/crc32c.ts';
import { u64le, viewOf } from '../common.ts';
import * as L from './layout.ts';

const hex2 = (b: number) => b.toString(16).padStart(2, '0');

/** A GUID in its text form, from the mixed-endian layout (three little-endian fields, then 8 bytes as stored). */
export function guidAt(bytes: Uint8Array, at: number): string {
  const b = (i: number) => hex2(bytes[at + i]!);
  return (
    b(3) + b(2) + b(1) + b(0) + '-' + b(5) + b(4) + '-' + b(7) + b(6) + '-' +
    b(8) + b(9) + '-' + b(10) + b(11) + b(12) + b(13) + b(14) + b(15)
  );
}

export const ZERO_GUID = '00000000-0000-0000-0000-000000000000';

/** CRC-32C of `bytes` with the 4-byte checksum field at `at` taken as zero (2.2.2, 2.2.3.1, 2.3.1.1). */
export function checksumWithFieldZeroed(bytes: Uint8Array, at: number): number {
  let crc = crc32c(bytes.subarray(0, at));
  crc = crc32c(new Uint8Array(4), crc);
  return crc32c(bytes.subarray(at + 4), crc);
}

export function hasFileSignature(head: Uint8Array): boolean {
  if (head.length < L.FILE_SIGNATURE.length) return false;
  for (let i = 0; i < L.FILE_SIGNATURE.length; i++) if (head[i] !== L.FILE_SIGNATURE.charCodeAt(i)) return false;
  return true;
}

export interface VhdxHeader {
  /** Which of the two (0 or 1), and where it is. */
  index: number;
  fileOffset: number;
  sequenceNumber: bigint;
  dataWriteGuid: string;
  logGuid: string;
  logVersion: number;
  logLength: number;
  logOffset: number;
  /** The defined fields as stored, to compare two headers with equal sequence numbers. */
  raw: Uint8Array;
}

/** 2.2.2: a header is valid when its signature and checksum are (and, as qemu requires, its version is 1); otherwise why not. */
export function checkHeader(bytes: Uint8Array, index: number): VhdxHeader | string {
  const v = viewOf(bytes);
  if (v.getUint32(L.H.signature, true) !== L.HEADER_SIGNATURE) return 'bad signature';
  if (checksumWithFieldZeroed(bytes.subarray(0, L.HEADER_SIZE), L.H.checksum) !== v.getUint32(L.H.checksum, true)) {
    return 'bad checksum';
  }
  const version = v.getUint16(L.H.version, true);
  if (version !== L.HEADER_VERSION) return `unsupported version ${version}`;
  return {
    index,
    fileOffset: L.HEADER_OFFSETS[index]!,
    sequenceNumber: v.getBigUint64(L.H.sequenceNumber, true),
    dataWriteGuid: guidAt(bytes, L.H.dataWriteGuid),
    logGuid: guidAt(bytes, L.H.logGuid),
    logVersion: v.getUint16(L.H.logVersion, true),
    logLength: v.getUint32(L.H.logLength, true),
    logOffset: u64le(v, L.H.logOffset),
    raw: bytes.slice(0, L.H.end),
  };
}

/**
 * 2.2.2: the current header is the only valid one, or the valid one with the
 * greater sequence number. Two valid headers with the same number are
 * accepted only when identical (Disk2VHD writes such pairs; qemu accepts them).
 */
export function currentHeader(first: VhdxHeader | string, second: VhdxHeader | string, file: string): VhdxHeader {
  if (typeof first === 'string' && typeof second === 'string') {
    throw new ImageFormatError(file, 'VHDX header', L.HEADER_OFFSETS[0], `No valid VHDX header found (header 1: ${first}; header 2: ${second})`);
  }
  if (typeof first === 'string') return second as VhdxHeader;
  if (typeof second === 'string') return first;
  if (first.sequenceNumber > second.sequenceNumber) return first;
  if (second.sequenceNumber > first.sequenceNumber) return second;
  if (first.raw.every((b, i) => b === second.raw[i])) return first;
  throw new ImageFormatError(file, 'VHDX header', L.HEADER_OFFSETS[0], 'No valid VHDX header found (two different headers with the same sequence number)');
}

export interface Region {
  fileOffset: number;
  length: number;
}

export interface RegionTable {
  bat: Region;
  metadata: Region;
  /** Every entry, known or not, in table order (qemu keeps them all to test blocks against). */
  entries: Region[];
}

/** 2.2.3.1: a region table copy is usable when its signature and checksum are; otherwise why not. */
export function checkRegionTable(bytes: Uint8Array): string | undefined {
  const v = viewOf(bytes);
  if (v.getUint32(L.RT.signature, true) !== L.REGION_TABLE_SIGNATURE) return 'bad signature';
  if (checksumWithFieldZeroed(bytes, L.RT.checksum) !== v.getUint32(L.RT.checksum, true)) return 'bad checksum';
  return undefined;
}

/** 2.2.3: the BAT and metadata regions from a region table that passed `checkRegionTable`. */
export function parseRegionTable(bytes: Uint8Array, file: string, fileOffset: number): RegionTable {
  const v = viewOf(bytes);
  const fail = (at: number, detail: string) => new ImageFormatError(file, 'region table', fileOffset + at, detail);
  const count = v.getUint32(L.RT.entryCount, true);
  if (count > L.MAX_REGION_ENTRIES) throw fail(L.RT.entryCount, `${count} entries (at most ${L.MAX_REGION_ENTRIES})`);
  let bat: Region | undefined;
  let metadata: Region | undefined;
  const entries: Region[] = [];
  for (let i = 0; i < count; i++) {
    const at = L.RT.entries + i * L.RT.entrySize;
    const guid = guidAt(bytes, at + L.RT.guid);
    const region = { fileOffset: u64le(v, at + L.RT.fileOffset), length: v.getUint32(at + L.RT.length, true) };
    entries.push(region);
    if (guid === L.BAT_REGION_GUID) {
      if (bat) throw fail(at, 'two BAT regions');
      bat = region;
    } else if (guid === L.METADATA_REGION_GUID) {
      if (metadata) throw fail(at, 'two metadata regions');
      metadata = region;
    } else if (v.getUint32(at + L.RT.flags, true) & L.REGION_REQUIRED) {
      throw new UnsupportedFeatureError(file, `required VHDX region ${guid}`);
    }
  }
  if (!bat) throw fail(0, 'no BAT region');
  if (!metadata) throw fail(0, 'no metadata region');
  return { bat, metadata, entries };
}

/** The known metadata items found in the table: where each is, relative to the region. */
export type MetadataItems = Map<string, Region>;

const KNOWN_ITEMS = [
  L.FILE_PARAMETERS_GUID,
  L.VIRTUAL_DISK_SIZE_GUID,
  L.PAGE83_DATA_GUID,
  L.LOGICAL_SECTOR_SIZE_GUID,
  L.PHYSICAL_SECTOR_SIZE_GUID,
  L.PARENT_LOCATOR_GUID,
];

const ITEM_NAMES: Record<string, string> = {
  [L.FILE_PARAMETERS_GUID]: 'file parameters',
  [L.VIRTUAL_DISK_SIZE_GUID]: 'virtual disk size',
  [L.PAGE83_DATA_GUID]: 'page 83 data',
  [L.LOGICAL_SECTOR_SIZE_GUID]: 'logical sector size',
  [L.PHYSICAL_SECTOR_SIZE_GUID]: 'physical sector size',
  [L.PARENT_LOCATOR_GUID]: 'parent locator',
};

export const itemName = (guid: string): string => ITEM_NAMES[guid] ?? guid;

/** 2.6.1: the metadata table at the start of the metadata region (`regionLength` bytes long). */
export function parseMetadataTable(bytes: Uint8Array, file: string, fileOffset: number, regionLength: number): MetadataItems {
  const v = viewOf(bytes);
  const fail = (at: number, detail: string) => new ImageFormatError(file, 'metadata table', fileOffset + at, detail);
  if (!L.METADATA_SIGNATURE.split('').every((c, i) => bytes[i] === c.charCodeAt(0))) throw fail(0, 'bad signature');
  const count = v.getUint16(L.MT.entryCount, true);
  if (count > L.MAX_METADATA_ENTRIES) throw fail(L.MT.entryCount, `${count} entries (at most ${L.MAX_METADATA_ENTRIES})`);
  const items: MetadataItems = new Map();
  for (let i = 0; i < count; i++) {
    const at = L.MT.entries + i * L.MT.entrySize;
    const guid = guidAt(bytes, at + L.MT.itemId);
    const offset = v.getUint32(at + L.MT.offset, true);
    const length = v.getUint32(at + L.MT.length, true);
    if (!KNOWN_ITEMS.includes(guid)) {
      if (v.getUint32(at + L.MT.flags, true) & L.METADATA_IS_REQUIRED) throw new UnsupportedFeatureError(file, `required VHDX metadata item ${guid}`);
      continue;
    }
    if (items.has(guid)) throw fail(at, `two ${itemName(guid)} items`);
    if (length > L.MAX_METADATA_ITEM || offset + length > regionLength) {
      throw fail(at, `${itemName(guid)} item (${length} bytes at ${offset}) lies outside the metadata region (${regionLength} bytes)`);
    }
    items.set(guid, { fileOffset: offset, length });
  }
  for (const guid of KNOWN_ITEMS) {
    if (guid !== L.PARENT_LOCATOR_GUID && !items.has(guid)) throw fail(0, `no ${itemName(guid)} item`);
  }
  return items;
}

export interface FileParameters {
  blockSize: number;
  leaveBlocksAllocated: boolean;
  hasParent: boolean;
}

/** 2.6.2.1. */
export function parseFileParameters(bytes: Uint8Array, file: string, fileOffset: number): FileParameters {
  const v = viewOf(bytes);
  const blockSize = v.getUint32(0, true);
  const flags = v.getUint32(4, true);
  if (blockSize < L.MIN_BLOCK_SIZE || blockSize > L.MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new ImageFormatError(file, 'file parameters', fileOffset, `block size ${blockSize} is not a power of two from 1 MiB to 256 MiB`);
  }
  return { blockSize, leaveBlocksAllocated: (flags & L.LEAVE_BLOCKS_ALLOCATED) !== 0, hasParent: (flags & L.HAS_PARENT) !== 0 };
}

/** 2.6.2.2: the virtual size in bytes, at most 64 TiB. */
export function parseVirtualDiskSize(bytes: Uint8Array, file: string, fileOffset: number): number {
  const size = u64le(viewOf(bytes), 0);
  if (size > L.MAX_VIRTUAL_DISK_SIZE) {
    throw new ImageFormatError(file, 'virtual disk size', fileOffset, `virtual disk size ${size} exceeds the 64 TiB maximum`);
  }
  return size;
}

/** 2.6.2.4 and 2.6.2.5: 512 or 4096. */
export function parseSectorSize(bytes: Uint8Array, file: string, fileOffset: number, what: string): number {
  const size = viewOf(bytes).getUint32(0, true);
  if (!(L.SECTOR_SIZES as readonly number[]).includes(size)) {
    throw new ImageFormatError(file, what, fileOffset, `${what} ${size} is neither 512 nor 4096`);
  }
  return size;
}

const utf16 = new TextDecoder('utf-16le');

/** 2.6.2.6: the key/value pairs of a parent locator of the VHDX type. */
export function parseParentLocator(bytes: Uint8Array, file: string, fileOffset: number): Map<string, string> {
  const v = viewOf(bytes);
  const fail = (at: number, detail: string) => new ImageFormatError(file, 'parent locator', fileOffset + at, detail);
  if (bytes.length < L.PL.entries) throw fail(0, 'shorter than a parent locator header');
  const type = guidAt(bytes, L.PL.locatorType);
  if (type !== L.VHDX_PARENT_LOCATOR_TYPE) throw new UnsupportedFeatureError(file, `VHDX parent locator type ${type}`);
  const count = v.getUint16(L.PL.keyValueCount, true);
  if (L.PL.entries + count * L.PL.entrySize > bytes.length) throw fail(L.PL.keyValueCount, `${count} entries do not fit in the item`);
  const out = new Map<string, string>();
  const text = (at: number, offset: number, length: number, what: string) => {
    if (offset + length > bytes.length || length % 2 !== 0) throw fail(at, `${what} (${length} bytes at ${offset}) lies outside the item`);
    return utf16.decode(bytes.subarray(offset, offset + length));
  };
  for (let i = 0; i < count; i++) {
    const at = L.PL.entries + i * L.PL.entrySize;
    const key = text(at, v.getUint32(at + L.PL.keyOffset, true), v.getUint16(at + L.PL.keyLength, true), 'key');
    const value = text(at, v.getUint32(at + L.PL.valueOffset, true), v.getUint16(at + L.PL.valueLength, true), 'value');
    out.set(key, value);
  }
  return out;
}

/**
 * The parent's file name from a parent locator: the relative path, else the
 * absolute Windows path, else the volume path (2.6.2.6.1), with Windows
 * separators turned into '/' so that it combines with the child's path.
 */
export function parentPath(locator: Map<string, string>, file: string, fileOffset: number): string {
  for (const key of L.PARENT_PATH_KEYS) {
    const value = locator.get(key);
    if (value) return value.replace(/\\/g, '/');
  }
  throw new ImageFormatError(file, 'parent locator', fileOffset, `no ${L.PARENT_PATH_KEYS.join(', ')} entry`);
}
