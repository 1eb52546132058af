/**
 * qcow2 on-disk constants, from qemu's docs/interop/qcow2.txt. Section names
 * in the comments refer to that document.
 */

/** "Header": magic 'QFI\xfb'. */
export const MAGIC = 0x514649fb;

/** "Header" field offsets (big-endian). */
export const H = {
  magic: 0,
  version: 4,
  backingFileOffset: 8,
  backingFileSize: 16,
  clusterBits: 20,
  size: 24,
  cryptMethod: 32,
  l1Size: 36,
  l1TableOffset: 40,
  refcountTableOffset: 48,
  refcountTableClusters: 56,
  nbSnapshots: 60,
  snapshotsOffset: 64,
  // Version 3 only:
  incompatibleFeatures: 72,
  compatibleFeatures: 80,
  autoclearFeatures: 88,
  refcountOrder: 96,
  headerLength: 100,
  compressionType: 104,
} as const;

/** Version 2 headers end here; version 3 headers are at least this long. */
export const V2_HEADER_LENGTH = 72;
export const V3_MIN_HEADER_LENGTH = 104;

/** "Header": cluster_bits must be 9..21 (qemu's limits). */
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;

/** Incompatible feature bits ("Header", byte 72). */
export const INCOMPAT_DIRTY = 1 << 0;
export const INCOMPAT_CORRUPT = 1 << 1;
export const INCOMPAT_DATA_FILE = 1 << 2;
export const INCOMPAT_COMPRESSION = 1 << 3;
export const INCOMPAT_EXTL2 = 1 << 4;
export const INCOMPAT_KNOWN = 0x1f;

/** Compatible feature bits (byte 80). */
export const COMPAT_LAZY_REFCOUNTS = 1 << 0;

/** Autoclear feature bits (byte 88). */
export const AUTOCLEAR_BITMAPS = 1 << 0;
export const AUTOCLEAR_DATA_FILE_RAW = 1 << 1;

/** "Header extensions": type codes. */
export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_NAMES = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

/** "Compression type" values (byte 104). */
export const COMPRESSION_ZLIB = 0;
export const COMPRESSION_ZSTD = 1;

/**
 * "Cluster mapping": L1 and L2 entries. Offsets are bits 9..55; the high
 * 32-bit word holds bits 32..63, so masks are split into high and low words.
 */
export const OFFSET_MASK_HI = 0x00ffffff;
export const OFFSET_MASK_LO = 0xfffffe00;
/** Bit 63: refcount is exactly one ("copied"). */
export const FLAG_COPIED_HI = 0x80000000;
/** Bit 62: compressed cluster descriptor. */
export const FLAG_COMPRESSED_HI = 0x40000000;
/** Bit 0 of a standard L2 entry: reads as zeros (version 3). */
export const FLAG_ZERO_LO = 0x1;

/** "Extended L2 Entries": 32 subclusters per cluster, bitmap = alloc (low word) | zero (high word). */
export const SUBCLUSTERS_PER_CLUSTER = 32;

/** qemu's cap on the L1 table (QCOW_MAX_L1_SIZE). */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
/** qemu's cap on the snapshot count (QCOW_MAX_SNAPSHOTS). */
export const MAX_SNAPSHOTS = 65536;
/** qemu's cap on the backing file name length. */
export const MAX_BACKING_NAME = 1023;

/** "Snapshot table entry" fixed part. */
export const SN = {
  l1TableOffset: 0,
  l1Size: 8,
  idStrSize: 12,
  nameSize: 14,
  dateSec: 16,
  dateNsec: 20,
  vmClockNsec: 24,
  vmStateSize: 32,
  extraDataSize: 36,
  fixedLength: 40,
  // Extra data:
  extraVmStateSizeLarge: 0,
  extraDiskSize: 8,
  extraIcount: 16,
} as const;

/** "Cluster mapping": reserved bits of an L1 entry (bits 1..8 and 56..62), split into words. */
export const L1_RESERVED_HI = 0x7f000000;
export const L1_RESERVED_LO = 0x000001ff;
/** "Standard Cluster Descriptor": reserved bits 1..8 and 56..61. */
export const L2_STD_RESERVED_HI = 0x3f000000;
export const L2_STD_RESERVED_LO = 0x000001fe;
/** "Host cluster management": a refcount table entry holds a block offset in bits 9..63; bits 0..8 are reserved. */
export const REFT_RESERVED_LO = 0x1ff;
/** qemu's cap on the refcount table (QCOW_MAX_REFTABLE_SIZE). */
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
/** qemu's largest request end (BDRV_MAX_LENGTH): reads reaching past it fail; short of it, past the end of the file, they read zeros. */
export const MAX_REQUEST_END = 2 ** 63 - 2 ** 30;
/** qemu's cap on an L1 table, in entries, for snapshots too. */
export const MAX_L1_ENTRIES = MAX_L1_BYTES / 8;

/** "Bitmaps extension" fields, from the start of the extension data. */
export const BITMAPS_EXT = { nbBitmaps: 0, directorySize: 8, directoryOffset: 16, length: 24 } as const;
/** "Bitmap directory" entry fields. */
export const BITMAP_DIR = { tableOffset: 0, tableSize: 8, nameSize: 18, extraDataSize: 20, fixedLength: 24 } as const;
/** qemu's caps on the bitmap directory (1 KiB per bitmap, 65535 bitmaps) and on one bitmap table, in entries. */
export const MAX_BITMAP_DIRECTORY_BYTES = 1024 * 65535;
export const MAX_BITMAP_TABLE_ENTRIES = 0x8000000;
/** "Bitmap table": reserved bits 1..8 and 56..63 (split into words); bit 0 means all ones when there is no offset. */
export const BITMAP_TABLE_RESERVED_HI = 0xff000000;
export const BITMAP_TABLE_RESERVED_LO = 0x000001fe;
export const BITMAP_TABLE_ALL_ONES = 0x1;
