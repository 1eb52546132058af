/**
 * VDI (VirtualBox Disk Image) on-disk constants: the pre-header and the
 * version 1.1 header, all little-endian, as VirtualBox's VDICore.h lays them
 * out (VDIPREHEADER, VDIHEADER1PLUS), with the limits qemu 7.2's vdi driver
 * applies.
 */

/** VDIPREHEADER: 64 bytes of free text, then the signature and the version. */
export const SIGNATURE = 0xbeda107f;
/** Version 1.1, stored as major << 16 | minor. */
export const VERSION_1_1 = 0x00010001;

/** Header field offsets from the start of the file (pre-header included). */
export const H = {
  text: 0x00,
  signature: 0x40,
  version: 0x44,
  headerSize: 0x48,
  imageType: 0x4c,
  imageFlags: 0x50,
  description: 0x54,
  offsetBmap: 0x154,
  offsetData: 0x158,
  cylinders: 0x15c,
  heads: 0x160,
  sectors: 0x164,
  sectorSize: 0x168,
  diskSize: 0x170,
  blockSize: 0x178,
  blockExtra: 0x17c,
  blocksInImage: 0x180,
  blocksAllocated: 0x184,
  uuidImage: 0x188,
  uuidLastSnap: 0x198,
  uuidLink: 0x1a8,
  uuidParent: 0x1b8,
} as const;

/** Bytes read for the header (qemu reads and probes one 512-byte sector). */
export const HEADER_BYTES = 512;
export const UUID_BYTES = 16;

/** VDI_IMAGE_TYPE: a static image has every block allocated in order at creation. */
export const TYPE_DYNAMIC = 1;
export const TYPE_STATIC = 2;

export const SECTOR = 512;
/** The only block size qemu accepts (its DEFAULT_CLUSTER_SIZE), and VirtualBox's default. */
export const BLOCK_SIZE = 1024 * 1024;

/** Block map entries: a block never written (reads as zeros with no parent). */
export const BLOCK_FREE = 0xffffffff;
/** A block known to be zero (VirtualBox's VDI_IMAGE_BLOCK_ZERO; qemu calls it discarded). */
export const BLOCK_ZERO = 0xfffffffe;

/** qemu's VDI_BLOCKS_IN_IMAGE_MAX: the block map must stay under 2 GiB. */
export const MAX_BLOCKS = Math.floor(Math.floor(0x7fffffff / SECTOR) * SECTOR / 4);
/** qemu's VDI_DISK_SIZE_MAX. */
export const MAX_DISK_SIZE = MAX_BLOCKS * BLOCK_SIZE;
