/**
 * Pure parsers for VHD metadata: the hard disk footer, the dynamic disk
 * header with its parent locators, and the sector bitmap of a block. They
 * take bytes and return structures or throw `ImageFormatError`; reading the
 * bytes is the driver's job.
 */
import { ImageFormatError } from '../../errors.ts';
import { u64be, viewOf } from '../common.ts';
import * as L from './layout.ts';

export interface VhdFooter {
  diskType: number;
  /** Where the dynamic disk header is (dynamic and differencing disks). */
  dataOffset: number;
  currentSize: number;
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
  /** Four characters naming the tool that made the image ('qemu', 'win ' …). */
  creatorApp: string;
}

const latin1 = (bytes: Uint8Array) => String.fromCharCode(...bytes);

/** True when the 512 bytes start with the footer cookie 'conectix'. */
export function hasFooterCookie(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && latin1(bytes.subarray(0, 8)) === L.FOOTER_COOKIE;
}

/** "Checksum": the one's complement of the sum of the footer's bytes, the checksum field counted as zero. */
export function footerChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < L.FOOTER_SIZE; i++) {
    if (i < L.F.checksum || i >= L.F.checksum + 4) sum += bytes[i] ?? 0;
  }
  return ~sum >>> 0;
}

/** Parses a footer (512 bytes) found at `fileOffset`; its cookie and checksum must be right. */
export function parseFooter(bytes: Uint8Array, file: string, fileOffset: number): VhdFooter {
  const v = viewOf(bytes);
  if (bytes.length < L.FOOTER_SIZE || !hasFooterCookie(bytes)) {
    throw new ImageFormatError(file, 'VHD footer', fileOffset, 'invalid VPC image (no conectix cookie)');
  }
  const stored = v.getUint32(L.F.checksum);
  const computed = footerChecksum(bytes);
  if (stored !== computed) {
    throw new ImageFormatError(
      file,
      'VHD footer',
      fileOffset + L.F.checksum,
      `Incorrect header checksum (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`,
    );
  }
  return {
    diskType: v.getUint32(L.F.diskType),
    dataOffset: u64be(v, L.F.dataOffset),
    currentSize: u64be(v, L.F.currentSize),
    cylinders: v.getUint16(L.F.cylinders),
    heads: v.getUint8(L.F.heads),
    sectorsPerTrack: v.getUint8(L.F.sectorsPerTrack),
    creatorApp: latin1(bytes.subarray(L.F.creatorApp, L.F.creatorApp + 4)),
  };
}

/**
 * The virtual size in sectors, decided as qemu decides it: Virtual PC (and
 * qemu without force_size) size the disk by its CHS geometry; Hyper-V and the
 * other tools in CURRENT_SIZE_CREATORS by "Current Size", which is also used
 * whenever the geometry is the largest a footer can hold (the size could not
 * be expressed in CHS).
 */
export function virtualSectors(f: VhdFooter, file: string, fileOffset: number): number {
  const chs = f.cylinders * f.heads * f.sectorsPerTrack;
  const byCurrentSize = L.CURRENT_SIZE_CREATORS.includes(f.creatorApp) || chs === L.MAX_GEOMETRY_SECTORS;
  const sectors = byCurrentSize ? Math.floor(f.currentSize / L.SECTOR) : chs;
  if (sectors > L.MAX_SECTORS) {
    throw new ImageFormatError(file, 'VHD footer', fileOffset + L.F.currentSize, `File too large: ${sectors} sectors is over the 2040 GiB limit`);
  }
  return sectors;
}

export interface ParentLocator {
  /** Which of the eight entries it is. */
  index: number;
  platform: number;
  dataLength: number;
  dataOffset: number;
}

export interface DynHeader {
  tableOffset: number;
  maxTableEntries: number;
  blockSize: number;
  /** "Parent Unicode Name" (differencing disks): usually the parent's file name. */
  parentName: string;
  locators: ParentLocator[];
}

/** Parses the dynamic disk header (1024 bytes) found at `fileOffset`. */
export function parseDynHeader(bytes: Uint8Array, file: string, fileOffset: number): DynHeader {
  const v = viewOf(bytes);
  const fail = (at: number, detail: string) => new ImageFormatError(file, 'VHD dynamic disk header', fileOffset + at, detail);
  if (bytes.length < L.DYN_HEADER_SIZE || latin1(bytes.subarray(0, 8)) !== L.DYN_COOKIE) throw fail(0, 'Invalid header magic');
  const blockSize = v.getUint32(L.D.blockSize);
  // A power of two of at least one sector, as qemu requires.
  if (blockSize < L.SECTOR || (blockSize & (blockSize - 1)) !== 0) throw fail(L.D.blockSize, `Invalid block size ${blockSize}`);
  const locators: ParentLocator[] = [];
  for (let i = 0; i < L.LOCATOR_COUNT; i++) {
    const at = L.D.parentLocators + i * L.LOCATOR_SIZE;
    const platform = v.getUint32(at + L.PL.platformCode);
    if (platform === 0) continue;
    locators.push({ index: i, platform, dataLength: v.getUint32(at + L.PL.dataLength), dataOffset: u64be(v, at + L.PL.dataOffset) });
  }
  return {
    tableOffset: u64be(v, L.D.tableOffset),
    maxTableEntries: v.getUint32(L.D.maxTableEntries),
    blockSize,
    parentName: utf16(bytes.subarray(L.D.parentName, L.D.parentName + L.PARENT_NAME_BYTES), false),
    locators,
  };
}

/** UTF-16 text up to the first NUL; unpaired surrogates are kept as they are. */
function utf16(bytes: Uint8Array, littleEndian: boolean): string {
  const v = viewOf(bytes);
  const units: number[] = [];
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    const u = v.getUint16(i, littleEndian);
    if (u === 0) break;
    units.push(u);
  }
  let out = '';
  for (let i = 0; i < units.length; i += 4096) out += String.fromCharCode(...units.slice(i, i + 4096));
  return out;
}

/** The platform codes used to name the parent, most useful first: a relative path survives moving both files. */
const LOCATOR_PREFERENCE = [L.PLATFORM_W2RU, L.PLATFORM_W2KU, L.PLATFORM_MACX];

/** The parent locator to follow, if any has a platform code this engine reads. */
export function preferredLocator(h: DynHeader): ParentLocator | undefined {
  for (const code of LOCATOR_PREFERENCE) {
    const found = h.locators.find((l) => l.platform === code && l.dataLength > 0);
    if (found) return found;
  }
  return undefined;
}

/**
 * A locator's bytes as a path with forward slashes: Windows paths (UTF-16
 * little-endian) lose their leading ".\", a MacX file URL its scheme and host.
 */
export function decodeLocator(loc: ParentLocator, bytes: Uint8Array): string {
  if (loc.platform === L.PLATFORM_MACX) {
    const url = new TextDecoder('utf-8').decode(bytes).replace(/\0.*$/s, '');
    const path = url.replace(/^file:\/\/[^/]*/i, '');
    try {
      return decodeURIComponent(path);
    } catch {
      return path;
    }
  }
  return utf16(bytes, true).replace(/\\/g, '/').replace(/^\.\//, '');
}

/** Whether sector `sector` of a block is marked present in its bitmap (most significant bit first). */
export function sectorPresent(bitmap: Uint8Array, sector: number): boolean {
  return (((bitmap[sector >>> 3] ?? 0) >>> (7 - (sector & 7))) & 1) === 1;
}
