/**
 * Pure builders for a new VDI image: the pre-header and version 1.1 header
 * (VirtualBox's VDIPREHEADER and VDIHEADER1PLUS) and the arrangement of block
 * map and data area, as qemu-img 7.2 creates them: the map right after the
 * header sector, the data after the map rounded up to a sector, no geometry.
 */
import * as L from './layout.ts';

/** The free text qemu puts in the pre-header. */
export const PREHEADER_TEXT = '<<< QEMU VM Virtual Disk Image >>>\n';
/** The version 1.1 header's size field (VDIHEADER1PLUS without the pre-header). */
export const HEADER_SIZE_FIELD = 0x180;

export interface VdiLayout {
  /** Guest size, whole sectors. */
  diskSize: number;
  blocks: number;
  offsetBmap: number;
  offsetData: number;
}

export function vdiLayout(size: number): VdiLayout {
  const diskSize = Math.ceil(size / L.SECTOR) * L.SECTOR;
  const blocks = Math.ceil(diskSize / L.BLOCK_SIZE);
  const offsetBmap = L.HEADER_BYTES;
  const offsetData = offsetBmap + Math.ceil((blocks * 4) / L.SECTOR) * L.SECTOR;
  return { diskSize, blocks, offsetBmap, offsetData };
}

export interface HeaderFields {
  layout: VdiLayout;
  imageType: number;
  blocksAllocated: number;
  /** 16 bytes each, stored as given. */
  uuidImage: Uint8Array;
  uuidLastSnap: Uint8Array;
}

/** The first sector of the file: pre-header, header, zero-filled to 512 bytes. */
export function vdiHeader(f: HeaderFields): Uint8Array {
  const out = new Uint8Array(L.HEADER_BYTES);
  const v = new DataView(out.buffer);
  out.set(new TextEncoder().encode(PREHEADER_TEXT), L.H.text);
  v.setUint32(L.H.signature, L.SIGNATURE, true);
  v.setUint32(L.H.version, L.VERSION_1_1, true);
  v.setUint32(L.H.headerSize, HEADER_SIZE_FIELD, true);
  v.setUint32(L.H.imageType, f.imageType, true);
  v.setUint32(L.H.offsetBmap, f.layout.offsetBmap, true);
  v.setUint32(L.H.offsetData, f.layout.offsetData, true);
  v.setUint32(L.H.sectorSize, L.SECTOR, true);
  v.setBigUint64(L.H.diskSize, BigInt(f.layout.diskSize), true);
  v.setUint32(L.H.blockSize, L.BLOCK_SIZE, true);
  v.setUint32(L.H.blocksInImage, f.layout.blocks, true);
  v.setUint32(L.H.blocksAllocated, f.blocksAllocated, true);
  out.set(f.uuidImage, L.H.uuidImage);
  out.set(f.uuidLastSnap, L.H.uuidLastSnap);
  return out;
}

/**
 * A random (version 4) UUID in VDI's byte order: VirtualBox's RTUUID keeps
 * the first three fields little-endian, so the version nibble is in byte 7.
 */
export function randomUuid(): Uint8Array {
  const u = crypto.getRandomValues(new Uint8Array(L.UUID_BYTES));
  u[7] = (u[7]! & 0x0f) | 0x40;
  u[8] = (u[8]! & 0x3f) | 0x80;
  return u;
}
