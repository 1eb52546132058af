/**
 * qcow (version 1) on-disk constants. The format has no document of its own
 * in qemu; its reference is the header struct and comments of qemu's
 * block/qcow.c, whose names the comments below use. Every field is
 * big-endian.
 */

/** QCOW_MAGIC: 'QFI\xfb', shared with qcow2; the version tells them apart. */
export const MAGIC = 0x514649fb;
/** QCOW_VERSION. */
export const VERSION = 1;

/** QCowHeader field offsets. */
export const H = {
  magic: 0,
  version: 4,
  backingFileOffset: 8,
  backingFileSize: 16,
  mtime: 20,
  size: 24,
  clusterBits: 32,
  l2Bits: 33,
  cryptMethod: 36,
  l1TableOffset: 40,
} as const;

/** sizeof(QCowHeader). */
export const HEADER_LENGTH = 48;

/** Cluster sizes qemu opens: 512 B to 64 KiB. */
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 16;
/** L2 tables of 512 B to 64 KiB, in 8-byte entries. */
export const MIN_L2_BITS = 6;
export const MAX_L2_BITS = 13;

/** crypt_method values: QCOW_CRYPT_NONE, QCOW_CRYPT_AES. */
export const CRYPT_NONE = 0;
export const CRYPT_AES = 1;

/** Entries of both tables are u64 host offsets. */
export const ENTRY_BYTES = 8;

/**
 * QCOW_OFLAG_COMPRESSED, bit 63 of an L2 entry (the top bit of the high
 * word). Below it, the compressed size in bytes takes cluster_bits bits
 * (bits 63 - cluster_bits .. 62), and the host offset the bits under those.
 */
export const FLAG_COMPRESSED_HI = 0x80000000;

/** qemu's limit on the L1 table: INT_MAX bytes of entries. */
export const MAX_L1_ENTRIES = Math.floor(0x7fffffff / ENTRY_BYTES);
/** qemu's limit on the backing file name. */
export const MAX_BACKING_NAME = 1023;
