/**
 * Pure parsers for QED metadata: the header and the backing file name. They
 * take bytes (and the file size the header is checked against) and return
 * structures or throw typed errors, with qemu's wording for what qemu refuses;
 * fetching the bytes is the driver's job.
 */
import { ImageFormatError, UnsupportedFeatureError } from '../../errors.ts';
import { u64le, viewOf } from '../common.ts';
import * as L from './layout.ts';

export interface QedHeader {
  clusterSize: number;
  /** Clusters per table (L1 and L2). */
  tableSize: number;
  /** Clusters before the first regular cluster. */
  headerSize: number;
  features: number;
  l1TableOffset: number;
  imageSize: number;
  /** Set when the backing file feature is: where the name is, within the header clusters. */
  backingName?: { offset: number; size: number };
  /** The file size rounded down to a whole cluster: clusters must start below it. */
  fileClusters: number;
}

const hex = (n: number) => '0x' + n.toString(16);
const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;

/**
 * Parses and checks the 64-byte header at the start of a file of `fileSize`
 * bytes, in the order qemu checks it, so a header with several faults gets
 * qemu's first complaint.
 */
export function parseHeader(bytes: Uint8Array, fileSize: number, file: string): QedHeader {
  const fail = (offset: number, detail: string) => new ImageFormatError(file, 'QED header', offset, detail);
  if (bytes.length < L.HEADER_LENGTH) throw fail(0, 'file is shorter than a QED header');
  const v = viewOf(bytes);
  if (v.getUint32(L.H.magic, true) !== L.MAGIC) throw fail(L.H.magic, 'Image not in QED format');

  const featuresHi = v.getUint32(L.H.features + 4, true);
  const features = v.getUint32(L.H.features, true);
  if (featuresHi !== 0 || (features & ~L.F_KNOWN) !== 0) {
    const unknown = featuresHi * 0x1_0000_0000 + ((features & ~L.F_KNOWN) >>> 0);
    throw new UnsupportedFeatureError(file, `QED features ${unknown.toString(16)}`);
  }

  const clusterSize = v.getUint32(L.H.clusterSize, true);
  if (clusterSize < L.MIN_CLUSTER_SIZE || clusterSize > L.MAX_CLUSTER_SIZE || !isPowerOfTwo(clusterSize)) {
    throw fail(L.H.clusterSize, `QED cluster size is invalid (${clusterSize})`);
  }
  const fileClusters = Math.floor(fileSize / clusterSize) * clusterSize;

  const tableSize = v.getUint32(L.H.tableSize, true);
  if (tableSize < L.MIN_TABLE_SIZE || tableSize > L.MAX_TABLE_SIZE || !isPowerOfTwo(tableSize)) {
    throw fail(L.H.tableSize, `QED table size is invalid (${tableSize})`);
  }

  // Both the 512-byte multiple and the 2^53 bound are checked on exact words.
  const imageHi = v.getUint32(L.H.imageSize + 4, true);
  const imageLo = v.getUint32(L.H.imageSize, true);
  const imageSize = u64le(v, L.H.imageSize);
  const entries = (tableSize * clusterSize) / L.ENTRY_BYTES;
  if (imageLo % 512 !== 0 || imageHi >= 0x20_0000 || imageSize > entries * entries * clusterSize) {
    throw fail(L.H.imageSize, `QED image size is invalid (${imageSize})`);
  }

  const headerSize = v.getUint32(L.H.headerSize, true);
  const l1TableOffset = u64le(v, L.H.l1TableOffset);
  const h: QedHeader = { clusterSize, tableSize, headerSize, features, l1TableOffset, imageSize, fileClusters };
  if (!tableFits(h, l1TableOffset)) {
    throw fail(L.H.l1TableOffset, `QED table offset is invalid: an L1 table of ${tableSize * clusterSize} bytes at ${hex(l1TableOffset)} does not fit between the header and the end of the file (${fileSize} bytes)`);
  }
  if (headerSize > Math.floor(0xffffffff / clusterSize)) throw fail(L.H.headerSize, 'QED header size is too large');

  if (features & L.F_BACKING_FILE) {
    const offset = v.getUint32(L.H.backingFilenameOffset, true);
    const size = v.getUint32(L.H.backingFilenameSize, true);
    if (offset + size > clusterSize * headerSize) throw fail(L.H.backingFilenameOffset, 'QED backing filename offset is invalid');
    if (size > L.MAX_BACKING_NAME) throw fail(L.H.backingFilenameSize, 'Failed to read backing filename: the name is too long');
    h.backingName = { offset, size };
  }
  return h;
}

/**
 * A cluster offset a table may name: cluster aligned, past the header
 * clusters, and starting before the end of the file (qemu's
 * qed_check_cluster_offset).
 */
export function clusterFits(h: QedHeader, offset: number): boolean {
  return offset % h.clusterSize === 0 && offset >= h.headerSize * h.clusterSize && offset < h.fileClusters;
}

/**
 * A table offset: all of the table's clusters fit. qemu's own test also
 * refuses every table of a single cluster (table_size 1), which the
 * specification allows; such images are read here.
 */
export function tableFits(h: QedHeader, offset: number): boolean {
  return clusterFits(h, offset) && offset + h.tableSize * h.clusterSize <= h.fileClusters;
}

const text = new TextDecoder('utf-8');

/** The backing file name: the stored bytes up to the first NUL, as qemu reads it into a C string; empty means none. */
export function parseBackingName(bytes: Uint8Array): string | undefined {
  const nul = bytes.indexOf(0);
  const name = text.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
  return name === '' ? undefined : name;
}
