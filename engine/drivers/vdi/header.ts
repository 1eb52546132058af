/**
 * Pure parser for the VDI header: bytes in, a structure out, or a typed error.
 * The checks and their order are qemu 7.2's (vdi_open), so an image qemu-img
 * refuses is refused here for the same reason; the file-size checks that need
 * more than the header are the driver's.
 */
import { ImageFormatError, UnsupportedFeatureError } from '../../errors.ts';
import { viewOf } from '../common.ts';
import * as L from './layout.ts';

export interface VdiHeader {
  imageType: number;
  offsetBmap: number;
  offsetData: number;
  /** Guest size in bytes, rounded up to a whole sector as qemu does. */
  diskSize: number;
  blockSize: number;
  blocksInImage: number;
  blocksAllocated: number;
}

const hex = (n: number | bigint, width = 0) => n.toString(16).padStart(width, '0');

function isNullUuid(bytes: Uint8Array, at: number): boolean {
  return bytes.subarray(at, at + L.UUID_BYTES).every((b) => b === 0);
}

/** Parses the first 512 bytes of the file (zero-padded when the file is shorter). */
export function parseHeader(bytes: Uint8Array, file: string): VdiHeader {
  const v = viewOf(bytes);
  const u32 = (at: number) => v.getUint32(at, true);
  const bad = (at: number, detail: string) => new ImageFormatError(file, 'VDI header', at, detail);
  if (bytes.length < L.HEADER_BYTES) throw bad(0, 'file is shorter than a VDI header');

  // qemu checks the size before anything else, on the full 64-bit field.
  const rawSize = v.getBigUint64(L.H.diskSize, true);
  if (rawSize > BigInt(L.MAX_DISK_SIZE)) {
    throw bad(L.H.diskSize, `Unsupported VDI image size (size is 0x${hex(rawSize)}, max supported is 0x${hex(L.MAX_DISK_SIZE)})`);
  }
  // 'VBoxManage convertfromraw' writes sizes that are not whole sectors; qemu rounds them up.
  const diskSize = Math.ceil(Number(rawSize) / L.SECTOR) * L.SECTOR;

  const signature = u32(L.H.signature);
  if (signature !== L.SIGNATURE) throw bad(L.H.signature, `Image not in VDI format (bad signature ${hex(signature, 8)})`);
  const version = u32(L.H.version);
  if (version !== L.VERSION_1_1) throw new UnsupportedFeatureError(file, `VDI version ${version >>> 16}.${version & 0xffff}`);

  const h: VdiHeader = {
    imageType: u32(L.H.imageType),
    offsetBmap: u32(L.H.offsetBmap),
    offsetData: u32(L.H.offsetData),
    diskSize,
    blockSize: u32(L.H.blockSize),
    blocksInImage: u32(L.H.blocksInImage),
    blocksAllocated: u32(L.H.blocksAllocated),
  };
  const sectorSize = u32(L.H.sectorSize);
  if (h.offsetBmap % L.SECTOR !== 0) {
    throw bad(L.H.offsetBmap, `unsupported VDI image (unaligned block map offset 0x${hex(h.offsetBmap)})`);
  }
  if (h.offsetData % L.SECTOR !== 0) {
    throw bad(L.H.offsetData, `unsupported VDI image (unaligned data offset 0x${hex(h.offsetData)})`);
  }
  if (sectorSize !== L.SECTOR) throw bad(L.H.sectorSize, `unsupported VDI image (sector size ${sectorSize} is not ${L.SECTOR})`);
  if (h.blockSize !== L.BLOCK_SIZE) throw new UnsupportedFeatureError(file, `VDI block size ${h.blockSize} (only ${L.BLOCK_SIZE} is supported)`);
  if (h.diskSize > h.blocksInImage * h.blockSize) {
    throw bad(L.H.diskSize, `unsupported VDI image (disk size ${h.diskSize}, image bitmap has room for ${h.blocksInImage * h.blockSize})`);
  }
  // A link or parent UUID makes a differencing image: its parent is found by UUID, not by name.
  if (!isNullUuid(bytes, L.H.uuidLink)) throw new UnsupportedFeatureError(file, 'VDI differencing image (non-NULL link UUID)');
  if (!isNullUuid(bytes, L.H.uuidParent)) throw new UnsupportedFeatureError(file, 'VDI differencing image (non-NULL parent UUID)');
  if (h.blocksInImage > L.MAX_BLOCKS) {
    throw bad(L.H.blocksInImage, `unsupported VDI image (too many blocks ${h.blocksInImage}, max is ${L.MAX_BLOCKS})`);
  }
  return h;
}
