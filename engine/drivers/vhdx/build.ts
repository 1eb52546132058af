/**
 * Pure builders for the VHDX structures a writer lays down ([MS-VHDX]): where
 * each region of a new file goes, the file type identifier, the two headers,
 * the region table, the metadata region with its known items, and pages of
 * BAT entries. They return bytes; writing them is the writer's job.
 */
import { viewOf } from '../common.ts';
import { checksumWithFieldZeroed } from './header.ts';
import { bitmapIndex, geometry, type Geometry } from './bat.ts';
import * as L from './layout.ts';

const MiB = 1024 * 1024;
const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

/** The logical and physical sector size of new disks, as qemu makes them. */
export const SECTOR = 512;

/** Where the regions of a new file go: the log after the header section, then the BAT, the metadata, and the payload. */
export interface VhdxLayout {
  g: Geometry;
  logOffset: number;
  logLength: number;
  batOffset: number;
  batLength: number;
  metadataOffset: number;
  metadataLength: number;
  /** Where payload blocks start. */
  dataOffset: number;
}

export function planLayout(size: number, blockSize: number, logLength: number): VhdxLayout {
  const g = geometry(size, blockSize, SECTOR, false);
  const logOffset = L.HEADER_SECTION_SIZE;
  const batOffset = logOffset + logLength;
  // 2.2.3.2: region lengths are whole MiB; an empty disk still gets a (1 MiB) BAT region.
  const batLength = Math.max(MiB, roundUp(g.entries * L.BAT_ENTRY_SIZE, MiB));
  const metadataOffset = batOffset + batLength;
  const metadataLength = MiB;
  return { g, logOffset, logLength, batOffset, batLength, metadataOffset, metadataLength, dataOffset: metadataOffset + metadataLength };
}

/** A random (version 4) GUID in the mixed-endian layout; random bytes need no byte swapping. */
export function randomGuid(): Uint8Array {
  const id = crypto.getRandomValues(new Uint8Array(16));
  id[7] = (id[7]! & 0x0f) | 0x40;
  id[8] = (id[8]! & 0x3f) | 0x80;
  return id;
}

/** A GUID's text form in the mixed-endian layout (three little-endian fields, then 8 bytes as written). */
export function guidBytes(text: string): Uint8Array {
  const hex = text.replace(/-/g, '');
  const b = (i: number) => parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
  return Uint8Array.from(order, b);
}

/** 2.2.1 "File Type Identifier": the signature and the creator, in UTF-16 little-endian. */
export function buildFileIdentifier(creator: string): Uint8Array {
  const bytes = new Uint8Array(L.FILE_SIGNATURE.length + 512);
  for (let i = 0; i < L.FILE_SIGNATURE.length; i++) bytes[i] = L.FILE_SIGNATURE.charCodeAt(i);
  const v = viewOf(bytes);
  for (let i = 0; i < creator.length && i < 255; i++) v.setUint16(L.FILE_SIGNATURE.length + 2 * i, creator.charCodeAt(i), true);
  return bytes;
}

export interface HeaderFields {
  sequenceNumber: number;
  fileWriteGuid: Uint8Array;
  dataWriteGuid: Uint8Array;
  layout: VhdxLayout;
}

/** 2.2.2 "Headers": 4 KiB with its CRC-32C. A zero log GUID says the log is empty: nothing to replay. */
export function buildHeader(f: HeaderFields): Uint8Array {
  const bytes = new Uint8Array(L.HEADER_SIZE);
  const v = viewOf(bytes);
  v.setUint32(L.H.signature, L.HEADER_SIGNATURE, true);
  v.setBigUint64(L.H.sequenceNumber, BigInt(f.sequenceNumber), true);
  bytes.set(f.fileWriteGuid, L.H.fileWriteGuid);
  bytes.set(f.dataWriteGuid, L.H.dataWriteGuid);
  v.setUint16(L.H.logVersion, L.LOG_VERSION, true);
  v.setUint16(L.H.version, L.HEADER_VERSION, true);
  v.setUint32(L.H.logLength, f.layout.logLength, true);
  v.setBigUint64(L.H.logOffset, BigInt(f.layout.logOffset), true);
  v.setUint32(L.H.checksum, checksumWithFieldZeroed(bytes, L.H.checksum), true);
  return bytes;
}

/** 2.2.3 "Region Table": 64 KiB naming the BAT and metadata regions, both required, with its CRC-32C. */
export function buildRegionTable(layout: VhdxLayout): Uint8Array {
  const bytes = new Uint8Array(L.REGION_TABLE_SIZE);
  const v = viewOf(bytes);
  v.setUint32(L.RT.signature, L.REGION_TABLE_SIGNATURE, true);
  const regions: [string, number, number][] = [
    [L.BAT_REGION_GUID, layout.batOffset, layout.batLength],
    [L.METADATA_REGION_GUID, layout.metadataOffset, layout.metadataLength],
  ];
  v.setUint32(L.RT.entryCount, regions.length, true);
  regions.forEach(([guid, offset, length], i) => {
    const at = L.RT.entries + i * L.RT.entrySize;
    bytes.set(guidBytes(guid), at + L.RT.guid);
    v.setBigUint64(at + L.RT.fileOffset, BigInt(offset), true);
    v.setUint32(at + L.RT.length, length, true);
    v.setUint32(at + L.RT.flags, L.REGION_REQUIRED, true);
  });
  v.setUint32(L.RT.checksum, checksumWithFieldZeroed(bytes, L.RT.checksum), true);
  return bytes;
}

/** 2.6.1.2: IsVirtualDisk marks items that describe the disk rather than the file. */
const IS_VIRTUAL_DISK = 1 << 1;

/**
 * 2.6 "Metadata Region": the table, then the five items every disk without a
 * parent has, from 64 KiB on (2.6.1.2: items start past the table).
 */
export function buildMetadata(layout: VhdxLayout, fixed: boolean, page83: Uint8Array): Uint8Array {
  const items: [string, number, Uint8Array][] = [];
  const u32 = (n: number) => {
    const b = new Uint8Array(4);
    viewOf(b).setUint32(0, n, true);
    return b;
  };
  const params = new Uint8Array(L.FILE_PARAMETERS_SIZE);
  viewOf(params).setUint32(0, layout.g.blockSize, true);
  // A fixed disk's blocks are all in place and must stay so.
  viewOf(params).setUint32(4, fixed ? L.LEAVE_BLOCKS_ALLOCATED : 0, true);
  const diskSize = new Uint8Array(8);
  viewOf(diskSize).setBigUint64(0, BigInt(layout.g.size), true);
  items.push([L.FILE_PARAMETERS_GUID, L.METADATA_IS_REQUIRED, params]);
  items.push([L.VIRTUAL_DISK_SIZE_GUID, L.METADATA_IS_REQUIRED | IS_VIRTUAL_DISK, diskSize]);
  items.push([L.PAGE83_DATA_GUID, L.METADATA_IS_REQUIRED | IS_VIRTUAL_DISK, page83]);
  items.push([L.LOGICAL_SECTOR_SIZE_GUID, L.METADATA_IS_REQUIRED | IS_VIRTUAL_DISK, u32(SECTOR)]);
  items.push([L.PHYSICAL_SECTOR_SIZE_GUID, L.METADATA_IS_REQUIRED | IS_VIRTUAL_DISK, u32(SECTOR)]);

  const total = items.reduce((n, [, , value]) => n + value.length, 0);
  const bytes = new Uint8Array(L.METADATA_TABLE_SIZE + total);
  const v = viewOf(bytes);
  for (let i = 0; i < L.METADATA_SIGNATURE.length; i++) bytes[i] = L.METADATA_SIGNATURE.charCodeAt(i);
  v.setUint16(L.MT.entryCount, items.length, true);
  let offset = L.METADATA_TABLE_SIZE;
  items.forEach(([guid, flags, value], i) => {
    const at = L.MT.entries + i * L.MT.entrySize;
    bytes.set(guidBytes(guid), at + L.MT.itemId);
    v.setUint32(at + L.MT.offset, offset, true);
    v.setUint32(at + L.MT.length, value.length, true);
    v.setUint32(at + L.MT.flags, flags, true);
    bytes.set(value, offset);
    offset += value.length;
  });
  return bytes;
}

/** BAT entries per page the writer holds and writes at a time (64 KiB). */
export const BAT_PAGE_ENTRIES = 8192;

/** 2.5: a BAT entry: the state in bits 0-2, FileOffsetMB in bits 20-63. */
export function setBatEntry(page: DataView, slot: number, state: number, fileOffset: number): void {
  const mb = fileOffset / MiB;
  page.setUint32(slot * L.BAT_ENTRY_SIZE, (state | ((mb % 4096) << L.BAT_OFFSET_SHIFT)) >>> 0, true);
  page.setUint32(slot * L.BAT_ENTRY_SIZE + 4, Math.floor(mb / 4096), true);
}

/**
 * BAT page `n` (entries from n × BAT_PAGE_ENTRIES) before any block is
 * written: payload entries in `state` (fixed disks: every block present in
 * order from the data offset), sector bitmap entries not present.
 */
export function buildBatPage(layout: VhdxLayout, n: number, state: number, fixed: boolean): Uint8Array {
  const g = layout.g;
  const first = n * BAT_PAGE_ENTRIES;
  const count = Math.max(0, Math.min(BAT_PAGE_ENTRIES, g.entries - first));
  const bytes = new Uint8Array(count * L.BAT_ENTRY_SIZE);
  const v = viewOf(bytes);
  if (state === L.PAYLOAD_BLOCK_NOT_PRESENT && !fixed) return bytes;
  for (let i = first; i < first + count; i++) {
    const chunk = Math.floor(i / (g.chunkRatio + 1));
    if (i === bitmapIndex(g, chunk)) continue;
    const block = i - chunk;
    setBatEntry(v, i - first, state, fixed ? layout.dataOffset + block * g.blockSize : 0);
  }
  return bytes;
}
