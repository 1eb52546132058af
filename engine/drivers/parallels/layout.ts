/**
 * Parallels expandable image constants, from qemu's
 * docs/interop/parallels.txt ("Header", "BAT", "Format Extension"), all
 * little-endian, with the limits qemu 7.2's parallels driver applies.
 */

/** "Header" magic: the original format, BAT entries in sectors. */
export const MAGIC = 'WithoutFreeSpace';
/** "Header" magic: the extended format, BAT entries in clusters and a 64-bit size. */
export const MAGIC_EXT = 'WithouFreSpacExt';
/** "Header" version: must be 2. */
export const VERSION = 2;

/** "Header" field offsets. */
export const H = {
  magic: 0,
  version: 16,
  heads: 20,
  cylinders: 24,
  /** Cluster size, in sectors. */
  tracks: 28,
  batEntries: 32,
  /** Disk size in sectors; only the low 32 bits count with MAGIC. */
  nbSectors: 36,
  inUse: 44,
  dataOff: 48,
  flags: 52,
  extOff: 56,
} as const;

/** The header is 64 bytes; the BAT follows it at once ("BAT"). */
export const HEADER_BYTES = 64;
export const SECTOR = 512;

/** "in_use": set while the image is open for writing; left set when it was not closed cleanly. */
export const IN_USE = 0x746f6e59;

/** qemu's limit on tracks (INT32_MAX / 513): "Invalid image: Too big cluster". */
export const MAX_TRACKS = Math.floor(0x7fffffff / 513);
/** qemu's limit on the BAT (INT_MAX / 4 entries): "Catalog too large". */
export const MAX_BAT_ENTRIES = Math.floor(0x7fffffff / 4);
/** qemu's BDRV_MAX_LENGTH: the largest disk it opens (INT64_MAX aligned down to 1 GiB). */
export const MAX_LENGTH = 2n ** 63n - 2n ** 30n;

/** "Format Extension": the magic at the start of the extension cluster, then a 16-byte MD5 of the rest. */
export const EXT_MAGIC = 0xab234cef23dcea87n;
export const EXT_HEADER_BYTES = 24;
/** Feature magics: the end marker and "Dirty bitmaps feature". */
export const EXT_END = 0n;
export const EXT_DIRTY_BITMAP = 0x20385fae252cb34an;
/** This engine reads a Format Extension cluster whole (for its checksum) only up to this size. */
export const MAX_EXT_CLUSTER = 16 * 1024 * 1024;
