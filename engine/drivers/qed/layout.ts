/**
 * QED on-disk constants, from qemu's docs/interop/qed_spec.rst. Section names
 * in the comments refer to that document; every field is little-endian.
 */

/** "Header": magic 'QED\0' read as a little-endian u32. */
export const MAGIC = 0x00444551;

/** "Header" field offsets. */
export const H = {
  magic: 0,
  clusterSize: 4,
  tableSize: 8,
  headerSize: 12,
  features: 16,
  compatFeatures: 24,
  autoclearFeatures: 32,
  l1TableOffset: 40,
  imageSize: 48,
  backingFilenameOffset: 56,
  backingFilenameSize: 60,
} as const;

/** "Header": the fixed part, all a reader needs from the first cluster. */
export const HEADER_LENGTH = 64;

/** "Field descriptions": cluster_size is a power of two from 4 KiB to 64 MiB. */
export const MIN_CLUSTER_SIZE = 4 * 1024;
export const MAX_CLUSTER_SIZE = 64 * 1024 * 1024;
/** "Field descriptions": table_size (in clusters) is a power of two from 1 to 16. */
export const MIN_TABLE_SIZE = 1;
export const MAX_TABLE_SIZE = 16;

/** "Feature bits" of the features field (no compat or autoclear bits are defined). */
export const F_BACKING_FILE = 0x01;
export const F_NEED_CHECK = 0x02;
export const F_BACKING_FORMAT_NO_PROBE = 0x04;
export const F_KNOWN = F_BACKING_FILE | F_NEED_CHECK | F_BACKING_FORMAT_NO_PROBE;

/** "L2 table offsets" and "Data cluster offsets": entry values that are not offsets. */
export const UNALLOCATED = 0;
export const ZERO_CLUSTER = 1;

/** "Tables": every entry is a u64 offset. */
export const ENTRY_BYTES = 8;

/** qemu's buffer for the backing file name (PATH_MAX): longer names are refused. */
export const MAX_BACKING_NAME = 4095;
