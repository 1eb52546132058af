/**
 * Pure builders for the VMDK structures a writer lays down: the hosted sparse
 * extent header, the text descriptor, stream markers and the arrangement of
 * grain directories and tables in a monolithicSparse file. The layout and
 * descriptor are the ones qemu-img 7.2 writes, so `info` of our output and of
 * qemu-img's agree; the stream layout is VMware's "Stream-Optimized
 * Compressed Sparse Extents" (Virtual Disk Format 5.0).
 */
import * as L from './layout.ts';

/** Sectors per grain: 64 KiB grains, as qemu and VMware make them. */
export const GRAIN_SECTORS = 128;
export const GRAIN_BYTES = GRAIN_SECTORS * L.SECTOR;
/** Entries per grain table (a table is then 2 KiB, four sectors). */
export const GTES_PER_GT = 512;
export const GT_SECTORS = (GTES_PER_GT * 4) / L.SECTOR;
/** The embedded descriptor: at sector 1, 20 sectors reserved (qemu's choice, room for a long parent name). */
export const DESC_OFFSET = 1;
export const DESC_SECTORS = 20;
/** Stream-optimized grains start after a whole first grain of header and descriptor. */
export const STREAM_OVERHEAD = GRAIN_SECTORS;
/** A grain table entry is a u32 sector number, so grains must start below 2 TiB in the file. */
export const MAX_GTE_SECTOR = 0xffffffff;

/** ddb.adapterType values qemu accepts; IDE disks get 16 heads, the SCSI ones 255. */
export const ADAPTER_TYPES = ['ide', 'lsilogic', 'buslogic', 'legacyESX'] as const;
export type AdapterType = (typeof ADAPTER_TYPES)[number];

export interface Geometry {
  cylinders: number;
  heads: number;
  sectors: number;
}

/** ddb.geometry as qemu computes it: 63 sectors per track, cylinders rounded down and never capped. */
export function geometry(capacitySectors: number, adapter: AdapterType): Geometry {
  const heads = adapter === 'ide' ? 16 : 255;
  return { cylinders: Math.floor(capacitySectors / (heads * 63)), heads, sectors: 63 };
}

/** Where the metadata of a monolithicSparse extent lives, in sectors. */
export interface HostedLayout {
  capacity: number;
  gtCount: number;
  gdSectors: number;
  rgdOffset: number;
  gdOffset: number;
  /** The first grain; header, descriptor and both directories with their tables come before. */
  overHead: number;
}

/**
 * qemu's arrangement: header, descriptor, then the redundant directory with
 * all its grain tables, then the directory with all its tables, the whole
 * rounded up to a grain. Every table is preallocated, so the directories are
 * fixed from the start.
 */
export function hostedLayout(capacity: number): HostedLayout {
  const gtCount = Math.ceil(Math.ceil(capacity / GRAIN_SECTORS) / GTES_PER_GT);
  const gdSectors = Math.ceil((gtCount * 4) / L.SECTOR);
  const rgdOffset = DESC_OFFSET + DESC_SECTORS;
  const gdOffset = rgdOffset + gdSectors + gtCount * GT_SECTORS;
  const end = gdOffset + gdSectors + gtCount * GT_SECTORS;
  return { capacity, gtCount, gdSectors, rgdOffset, gdOffset, overHead: Math.ceil(end / GRAIN_SECTORS) * GRAIN_SECTORS };
}

/** The sector of grain table `i` behind a directory at `dirOffset` (all tables preallocated). */
export function tableSector(layout: HostedLayout, dirOffset: number, i: number): number {
  return dirOffset + layout.gdSectors + i * GT_SECTORS;
}

export interface HeaderFields {
  version: number;
  flags: number;
  /** Sectors. */
  capacity: number;
  rgdOffset: number;
  /** A sector, or 'end' for GD_AT_END (the footer has the real one). */
  gdOffset: number | 'end';
  overHead: number;
  compressAlgorithm: number;
}

/** "Hosted Sparse Extent Header": one sector, little-endian. */
export function sparseHeader(f: HeaderFields): Uint8Array {
  const out = new Uint8Array(L.SECTOR);
  const v = new DataView(out.buffer);
  v.setUint32(L.H.magic, L.MAGIC_KDMV);
  v.setUint32(L.H.version, f.version, true);
  v.setUint32(L.H.flags, f.flags, true);
  setU64(v, L.H.capacity, f.capacity);
  setU64(v, L.H.grainSize, GRAIN_SECTORS);
  setU64(v, L.H.descriptorOffset, DESC_OFFSET);
  setU64(v, L.H.descriptorSize, DESC_SECTORS);
  v.setUint32(L.H.numGTEsPerGT, GTES_PER_GT, true);
  setU64(v, L.H.rgdOffset, f.rgdOffset);
  if (f.gdOffset === 'end') {
    v.setUint32(L.H.gdOffset, L.GD_AT_END_LO, true);
    v.setUint32(L.H.gdOffset + 4, L.GD_AT_END_HI, true);
  } else {
    setU64(v, L.H.gdOffset, f.gdOffset);
  }
  setU64(v, L.H.overHead, f.overHead);
  out.set([0x0a, 0x20, 0x0d, 0x0a], L.H.newlineCheck);
  v.setUint16(L.H.compressAlgorithm, f.compressAlgorithm, true);
  return out;
}

function setU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, n % 0x1_0000_0000, true);
  v.setUint32(at + 4, Math.floor(n / 0x1_0000_0000), true);
}

export interface DescriptorFields {
  cid: number;
  /** 0xffffffff: no parent. */
  parentCid: number;
  createType: string;
  parentFileNameHint?: string;
  /** Extent lines, e.g. `RW 2048 SPARSE "disk.vmdk"`. */
  extents: string[];
  hwVersion: string;
  geometry: Geometry;
  adapterType: AdapterType;
  toolsVersion: string;
}

/** "The Descriptor File", line for line as qemu-img writes it (CIDs in unpadded hex, as qemu prints them). */
export function descriptorText(d: DescriptorFields): string {
  return [
    '# Disk DescriptorFile',
    'version=1',
    `CID=${d.cid.toString(16)}`,
    `parentCID=${d.parentCid.toString(16)}`,
    `createType="${d.createType}"`,
    d.parentFileNameHint === undefined ? '' : `parentFileNameHint="${d.parentFileNameHint}"`,
    '# Extent description',
    ...d.extents,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    `ddb.virtualHWVersion = "${d.hwVersion}"`,
    `ddb.geometry.cylinders = "${d.geometry.cylinders}"`,
    `ddb.geometry.heads = "${d.geometry.heads}"`,
    `ddb.geometry.sectors = "${d.geometry.sectors}"`,
    `ddb.adapterType = "${d.adapterType}"`,
    `ddb.toolsVersion = "${d.toolsVersion}"`,
    '',
  ].join('\n');
}

/** A metadata marker (GT, GD, footer; EOS with no sectors): one sector holding numSectors, size 0 and the type. */
export function metadataMarker(sectors: number, type: number): Uint8Array {
  const out = new Uint8Array(L.SECTOR);
  const v = new DataView(out.buffer);
  setU64(v, L.MARKER.value, sectors);
  v.setUint32(L.MARKER.type, type, true);
  return out;
}

/** The bytes a compressed grain takes: its marker (lba, size), the data, zero padding to a whole sector. */
export function grainRecordBytes(packedLength: number): number {
  return Math.ceil((L.GRAIN_MARKER_BYTES + packedLength) / L.SECTOR) * L.SECTOR;
}

/** Fills `out` (zeroed, `grainRecordBytes` long) with the marker of the grain at guest sector `lba` and its data. */
export function putGrainRecord(out: Uint8Array, lba: number, packed: Uint8Array): void {
  const v = new DataView(out.buffer, out.byteOffset, L.GRAIN_MARKER_BYTES);
  setU64(v, L.MARKER.value, lba);
  v.setUint32(L.MARKER.size, packed.length, true);
  out.set(packed, L.GRAIN_MARKER_BYTES);
}

/** Grain table entries as little-endian bytes. */
export function tableBytes(entries: Uint32Array): Uint8Array {
  const out = new Uint8Array(entries.length * 4);
  const v = new DataView(out.buffer);
  for (let i = 0; i < entries.length; i++) v.setUint32(i * 4, entries[i]!, true);
  return out;
}
