/**
 * Pure builders for the VHD structures a writer lays down: the disk geometry
 * and virtual size a new image gets (as qemu sizes it), the hard disk footer,
 * the dynamic disk header and the empty block allocation table. They return
 * bytes; writing them is the writer's job.
 */
import * as L from './layout.ts';
import { footerChecksum } from './header.ts';

/** "Disk Geometry" of a footer. */
export interface Chs {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

const chsSectors = (g: Chs) => g.cylinders * g.heads * g.sectorsPerTrack;

/** Appendix "CHS Calculation" of the VHD specification, for a disk of `totalSectors`. */
export function chsFor(totalSectors: number): Chs {
  const total = Math.min(totalSectors, L.MAX_GEOMETRY_SECTORS);
  let sectorsPerTrack: number;
  let heads: number;
  let cylTimesHeads: number;
  if (total >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylTimesHeads = Math.floor(total / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylTimesHeads = Math.floor(total / sectorsPerTrack);
    heads = Math.max(4, Math.floor((cylTimesHeads + 1023) / 1024));
    if (cylTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylTimesHeads = Math.floor(total / sectorsPerTrack);
    }
    if (cylTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylTimesHeads = Math.floor(total / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylTimesHeads / heads), heads, sectorsPerTrack };
}

const MAX_CHS: Chs = { cylinders: 65535, heads: 16, sectorsPerTrack: 255 };

export interface VhdSize {
  /** The virtual size in sectors ("Current Size" / 512). */
  sectors: number;
  geometry: Chs;
  /** "Creator Application": qemu's 'qem2' tells readers to size the disk by "Current Size", not by the geometry. */
  creatorApp: 'qemu' | 'qem2';
}

/**
 * The size a new image gets for `bytes` of guest data, as qemu decides it.
 * Without force_size the disk is sized by its geometry, so the size grows to
 * the smallest geometry that holds every sector (a converted disk is never
 * truncated); a disk too large for any geometry gets the largest one and
 * keeps its exact size. With force_size the size is kept as given and the
 * geometry is the largest one, which marks "use Current Size" to readers.
 * Undefined when the size is over qemu's 2040 GiB limit.
 */
export function vhdSize(bytes: number, forceSize: boolean): VhdSize | undefined {
  const requested = Math.ceil(bytes / L.SECTOR);
  let geometry: Chs = { cylinders: 0, heads: 0, sectorsPerTrack: 0 };
  if (forceSize) {
    geometry = MAX_CHS;
  } else {
    const wanted = Math.min(requested, L.MAX_GEOMETRY_SECTORS);
    // A geometry rounds the sector count down by less than heads × sectors per track, so this ends within 4080 steps.
    for (let extra = 0; wanted > chsSectors(geometry); extra++) geometry = chsFor(wanted + extra);
  }
  const sectors = chsSectors(geometry) === L.MAX_GEOMETRY_SECTORS ? requested : chsSectors(geometry);
  if (sectors > L.MAX_SECTORS) return undefined;
  return { sectors, geometry, creatorApp: forceSize ? 'qem2' : 'qemu' };
}

/** Seconds since 2000-01-01 00:00:00 UTC, the epoch of the footer's "Time Stamp". */
export function vhdTimestamp(now: Date): number {
  return Math.max(0, Math.floor((now.getTime() - Date.UTC(2000, 0, 1)) / 1000)) >>> 0;
}

/** A random (version 4) UUID, as the footer's "Unique Id". */
export function randomUuid(): Uint8Array {
  const id = crypto.getRandomValues(new Uint8Array(16));
  id[6] = (id[6]! & 0x0f) | 0x40;
  id[8] = (id[8]! & 0x3f) | 0x80;
  return id;
}

const ascii = (bytes: Uint8Array, at: number, text: string) => {
  for (let i = 0; i < text.length; i++) bytes[at + i] = text.charCodeAt(i);
};

function setU64(v: DataView, at: number, value: number): void {
  v.setUint32(at, Math.floor(value / 0x1_0000_0000));
  v.setUint32(at + 4, value >>> 0);
}

function allOnes(v: DataView, at: number): void {
  v.setUint32(at, 0xffffffff);
  v.setUint32(at + 4, 0xffffffff);
}

export interface FooterFields {
  diskType: typeof L.TYPE_FIXED | typeof L.TYPE_DYNAMIC;
  size: VhdSize;
  timestamp: number;
  uniqueId: Uint8Array;
}

/** "Hard Disk Footer Format": 512 bytes with their checksum. */
export function buildFooter(f: FooterFields): Uint8Array {
  const bytes = new Uint8Array(L.FOOTER_SIZE);
  const v = new DataView(bytes.buffer);
  ascii(bytes, L.F.cookie, L.FOOTER_COOKIE);
  // "Features": the reserved bit, which the specification says is always set.
  v.setUint32(L.F.features, 2);
  v.setUint32(L.F.version, 0x0001_0000);
  // "Data Offset": the dynamic disk header, right after the footer copy; all ones when there is none.
  if (f.diskType === L.TYPE_DYNAMIC) setU64(v, L.F.dataOffset, L.FOOTER_SIZE);
  else allOnes(v, L.F.dataOffset);
  v.setUint32(L.F.timestamp, f.timestamp);
  ascii(bytes, L.F.creatorApp, f.size.creatorApp);
  // Creator version and host OS as qemu writes them (Virtual PC 5.3 on Windows).
  v.setUint32(L.F.creatorVersion, 0x0005_0003);
  ascii(bytes, L.F.creatorOs, 'Wi2k');
  setU64(v, L.F.originalSize, f.size.sectors * L.SECTOR);
  setU64(v, L.F.currentSize, f.size.sectors * L.SECTOR);
  v.setUint16(L.F.cylinders, f.size.geometry.cylinders);
  v.setUint8(L.F.heads, f.size.geometry.heads);
  v.setUint8(L.F.sectorsPerTrack, f.size.geometry.sectorsPerTrack);
  v.setUint32(L.F.diskType, f.diskType);
  bytes.set(f.uniqueId, L.F.uniqueId);
  v.setUint32(L.F.checksum, footerChecksum(bytes));
  return bytes;
}

/** The block size qemu gives new dynamic disks (the specification's default). */
export const DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024;

/** Where the BAT of a new dynamic disk starts: after the footer copy and the dynamic disk header. */
export const BAT_OFFSET = L.FOOTER_SIZE + L.DYN_HEADER_SIZE;

/** "Max Table Entries" for a disk of `sectors`. */
export const tableEntries = (sectors: number, blockSize: number): number => Math.ceil((sectors * L.SECTOR) / blockSize);

/** The BAT's bytes on disk: whole sectors. */
export const batBytes = (entries: number): number => Math.ceil((entries * L.BAT_ENTRY_SIZE) / L.SECTOR) * L.SECTOR;

/** "Dynamic Disk Header Format": 1024 bytes with their checksum, for a disk that has no parent. */
export function buildDynHeader(entries: number, blockSize: number): Uint8Array {
  const bytes = new Uint8Array(L.DYN_HEADER_SIZE);
  const v = new DataView(bytes.buffer);
  ascii(bytes, L.D.cookie, L.DYN_COOKIE);
  // "Data Offset" is unused and all ones.
  allOnes(v, L.D.dataOffset);
  setU64(v, L.D.tableOffset, BAT_OFFSET);
  v.setUint32(L.D.headerVersion, 0x0001_0000);
  v.setUint32(L.D.maxTableEntries, entries);
  v.setUint32(L.D.blockSize, blockSize);
  let sum = 0;
  for (const b of bytes) sum += b;
  v.setUint32(L.D.checksum, ~sum >>> 0);
  return bytes;
}

/** The BAT as stored: big-endian sector offsets, all ones for blocks never written, padded with ones to a sector. */
export function buildBat(entries: Uint32Array): Uint8Array {
  const bytes = new Uint8Array(batBytes(entries.length)).fill(0xff);
  const v = new DataView(bytes.buffer);
  entries.forEach((e, i) => v.setUint32(i * L.BAT_ENTRY_SIZE, e));
  return bytes;
}
