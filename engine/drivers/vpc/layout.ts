/**
 * VHD (qemu's `vpc`) on-disk constants, from Microsoft's "Virtual Hard Disk
 * Image Format Specification" (version 1.0). Section names in the comments
 * refer to that document; all fields are big-endian unless said otherwise.
 */

export const SECTOR = 512;

/** "Hard Disk Footer Format": 512 bytes, at the end of every file and, for dynamic and differencing disks, copied at offset 0. */
export const FOOTER_SIZE = 512;
/** "Cookie": 'conectix'. */
export const FOOTER_COOKIE = 'conectix';

/** "Hard Disk Footer Format" field offsets. */
export const F = {
  cookie: 0,
  features: 8,
  version: 12,
  dataOffset: 16,
  timestamp: 24,
  creatorApp: 28,
  creatorVersion: 32,
  creatorOs: 36,
  originalSize: 40,
  currentSize: 48,
  cylinders: 56,
  heads: 58,
  sectorsPerTrack: 59,
  diskType: 60,
  checksum: 64,
  uniqueId: 68,
  savedState: 84,
} as const;

/** "Disk Type" values. */
export const TYPE_FIXED = 2;
export const TYPE_DYNAMIC = 3;
export const TYPE_DIFFERENCING = 4;

/** "Disk Geometry": the largest CHS a footer can hold (65535 cylinders, 16 heads, 255 sectors per track). */
export const MAX_GEOMETRY_SECTORS = 65535 * 16 * 255;

/**
 * "Creator Application" values of tools that size the disk by "Current Size"
 * rather than by the CHS geometry (Hyper-V, qemu with force_size, Disk2vhd,
 * XenConverter, XenServer's blktap); the list is qemu's.
 */
export const CURRENT_SIZE_CREATORS: readonly string[] = ['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0'];

/** qemu's cap on the virtual size (2040 GiB, VHD_MAX_SECTORS), above which it refuses the image. */
export const MAX_SECTORS = 0xff000000;

/** "Dynamic Disk Header Format": 1024 bytes at the footer's "Data Offset". */
export const DYN_HEADER_SIZE = 1024;
/** "Cookie": 'cxsparse'. */
export const DYN_COOKIE = 'cxsparse';

/** "Dynamic Disk Header Format" field offsets. */
export const D = {
  cookie: 0,
  dataOffset: 8,
  tableOffset: 16,
  headerVersion: 24,
  maxTableEntries: 28,
  blockSize: 32,
  checksum: 36,
  parentUniqueId: 40,
  parentTimestamp: 56,
  parentName: 64,
  parentLocators: 576,
} as const;

/** "Parent Unicode Name": 512 bytes of UTF-16 (big-endian). */
export const PARENT_NAME_BYTES = 512;

/** "Parent Locator Entries": eight entries of 24 bytes. */
export const LOCATOR_COUNT = 8;
export const LOCATOR_SIZE = 24;
export const PL = {
  platformCode: 0,
  dataSpace: 4,
  dataLength: 8,
  dataOffset: 16,
} as const;

/** "Platform Code" values, as big-endian u32 of their four characters. */
export const PLATFORM_W2RU = 0x57327275; // 'W2ru': relative Windows path, UTF-16 little-endian
export const PLATFORM_W2KU = 0x57326b75; // 'W2ku': absolute Windows path, UTF-16 little-endian
export const PLATFORM_MACX = 0x4d616358; // 'MacX': file URL, UTF-8

/** A locator longer than this is not a path (Windows paths stop at 32767 UTF-16 units). */
export const MAX_LOCATOR_BYTES = 65536;

/** "Block Allocation Table": an entry of all ones is an unallocated block; others are sector offsets. */
export const BAT_UNUSED = 0xffffffff;
export const BAT_ENTRY_SIZE = 4;

/** qemu's cap on "Max Table Entries" (INT_MAX / 4). */
export const MAX_TABLE_ENTRIES = 0x1fffffff;

/**
 * "Block Allocation Table and Data Blocks": each block starts with a bitmap of
 * one bit per sector (most significant bit first), padded to a whole sector.
 */
export function bitmapBytes(blockSize: number): number {
  return Math.ceil(blockSize / SECTOR / 8 / SECTOR) * SECTOR;
}
