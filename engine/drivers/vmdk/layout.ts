/**
 * VMDK on-disk constants, from VMware's "Virtual Disk Format 5.0" technical
 * note (sections named in the comments) and, where qemu reads more or less
 * than the note says, from what qemu 7.2's vmdk driver accepts.
 */

export const SECTOR = 512;

/** "Hosted Sparse Extent Header": magic 'KDMV' (stored little-endian as 0x564d444b). */
export const MAGIC_KDMV = 0x4b444d56;
/** The older "ESX Server Sparse Extent Header" (COWD, vmfsSparse). */
export const MAGIC_COWD = 0x434f5744;

/** "Hosted Sparse Extent Header" field offsets (little-endian, packed, magic included). */
export const H = {
  magic: 0,
  version: 4,
  flags: 8,
  capacity: 12,
  grainSize: 20,
  descriptorOffset: 28,
  descriptorSize: 36,
  numGTEsPerGT: 44,
  rgdOffset: 48,
  gdOffset: 56,
  overHead: 64,
  uncleanShutdown: 72,
  /** singleEndLineChar, nonEndLineChar, doubleEndLineChar1 and 2: '\n', ' ', '\r', '\n'. */
  newlineCheck: 73,
  compressAlgorithm: 77,
  /** Bytes of the header that are read. */
  length: 79,
} as const;

/*
 * "Hosted Sparse Extent Header": the flags. A reader needs only zeroed grains
 * and markers (the redundant grain directory, bit 1 and rgdOffset, matters
 * only to writers, and qemu takes compression from compressAlgorithm, not
 * from bit 16); a writer sets the others as VMware's note asks.
 */
/** The newline-detection bytes (H.newlineCheck) are valid. */
export const FLAG_NL_DETECT = 1 << 0;
/** A redundant grain directory (rgdOffset) is kept. */
export const FLAG_RGD = 1 << 1;
/** Zeroed-grain GTEs (value 1) are in use. */
export const FLAG_ZEROED_GRAIN = 1 << 2;
/** Grains are compressed (set with FLAG_MARKERS in stream-optimized extents). */
export const FLAG_COMPRESSED = 1 << 16;
/** Grains and metadata are preceded by markers ("Stream-Optimized Compressed Sparse Extents"). */
export const FLAG_MARKERS = 1 << 17;

/** compressAlgorithm: COMPRESSION_DEFLATE (the grains are zlib streams, RFC 1950). */
export const COMPRESSION_DEFLATE = 1;

/** gdOffset value meaning "the grain directory is found through the footer" (GD_AT_END). */
export const GD_AT_END_LO = 0xffffffff;
export const GD_AT_END_HI = 0xffffffff;

/** "The Footer": footer marker, footer (a copy of the header) and end-of-stream marker, one sector each, ending the file. */
export const FOOTER_BYTES = 3 * SECTOR;

/** "Stream-Optimized Compressed Sparse Extents": marker fields and types. */
export const MARKER = { value: 0, size: 8, type: 12 } as const;
export const MARKER_EOS = 0;
export const MARKER_GT = 1;
export const MARKER_GD = 2;
export const MARKER_FOOTER = 3;
/** A grain marker: lba (u64), size of the compressed data (u32), then the data. */
export const GRAIN_MARKER_BYTES = 12;

/** "Grain Table and Grain Directory": a GTE of 1 is a zeroed grain when FLAG_ZEROED_GRAIN is set. */
export const GTE_ZEROED = 1;

/** The COWD header fields (little-endian u32s after the magic). */
export const COWD = {
  version: 4,
  flags: 8,
  capacity: 12,
  grainSize: 16,
  gdOffset: 20,
  numGDEntries: 24,
  length: 44,
} as const;
/** COWD grain tables always hold 4096 entries. */
export const COWD_GTES_PER_GT = 4096;

/** qemu's limits: versions above 3 are refused, at most 512 GTEs per grain table, grains of at most 1 GiB, at most 32 Mi GD entries. */
export const MAX_VERSION = 3;
export const MAX_GTES_PER_GT = 512;
export const MAX_GRAIN_SECTORS = 0x200000;
export const MAX_GD_ENTRIES = 32 * 1024 * 1024;

/** qemu reads a descriptor file (or the text of an embedded one) up to 1 MiB - 1. */
export const MAX_DESCRIPTOR_BYTES = (1 << 20) - 1;
/** qemu reads CID, parentCID and parentFileNameHint from the first 20 sectors at the descriptor offset. */
export const DESC_SCAN_BYTES = 20 * SECTOR;
/** qemu looks for the embedded descriptor at sector 1 of a sparse file, whatever the header says. */
export const EMBEDDED_DESC_OFFSET = SECTOR;
/** qemu's bound on parentFileNameHint (PATH_MAX - 1). */
export const MAX_PARENT_NAME = 4095;
/** Extent file names are read by sscanf("%511[^\n\r\"]"). */
export const MAX_EXTENT_NAME = 511;

/** Create types qemu opens from a descriptor file. */
export const DESCRIPTOR_CREATE_TYPES = ['monolithicFlat', 'vmfs', 'vmfsSparse', 'seSparse', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat'];
/** Extent types qemu opens; other lines (ZERO, RDONLY access …) are skipped as qemu skips them. */
export const EXTENT_TYPES = ['FLAT', 'SPARSE', 'VMFS', 'VMFSSPARSE', 'SESPARSE'];
