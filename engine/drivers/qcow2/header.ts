/**
 * Pure parsers for qcow2 metadata: the header with its extensions, and the
 * snapshot table. They take bytes and return structures or throw
 * `ImageFormatError`; fetching the bytes is the driver's job.
 */
import { ImageFormatError, UnsupportedFeatureError } from '../../errors.ts';
import { u64be, viewOf } from '../common.ts';
import * as L from './layout.ts';

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  /** Low 32 bits of each feature word; higher bits are rejected or ignored as qemu does. */
  incompatible: number;
  compatible: number;
  autoclear: number;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  backingFormat?: string;
  dataFile?: string;
  /** The bitmaps extension, when qemu would use it (the autoclear bit says the bitmaps are consistent). */
  bitmaps?: BitmapsExtension;
  /** Names of feature bits from the feature name table, keyed "type:bit". */
  featureNames: Map<string, string>;
}

/** "Bitmaps extension": where the bitmap directory is. */
export interface BitmapsExtension {
  count: number;
  directorySize: number;
  directoryOffset: number;
}

const latin = new TextDecoder('utf-8');

/** Parses the header from the start of the file (at least the first cluster, or the whole file if shorter). */
export function parseHeader(bytes: Uint8Array, file: string): Qcow2Header {
  const v = viewOf(bytes);
  const fail = (structure: string, offset: number, detail: string) => new ImageFormatError(file, structure, offset, detail);
  if (bytes.length < L.V2_HEADER_LENGTH) throw fail('qcow2 header', 0, 'file is shorter than a qcow2 header');
  if (v.getUint32(L.H.magic) !== L.MAGIC) throw fail('qcow2 header', 0, 'Image is not in qcow2 format');
  const version = v.getUint32(L.H.version);
  if (version !== 2 && version !== 3) throw new UnsupportedFeatureError(file, `qcow2 version ${version}`);

  const clusterBits = v.getUint32(L.H.clusterBits);
  if (clusterBits < L.MIN_CLUSTER_BITS || clusterBits > L.MAX_CLUSTER_BITS) {
    throw fail('qcow2 header', L.H.clusterBits, `Unsupported cluster size: 2^${clusterBits}`);
  }
  const clusterSize = 2 ** clusterBits;

  const h: Qcow2Header = {
    version,
    backingFileOffset: u64be(v, L.H.backingFileOffset),
    backingFileSize: v.getUint32(L.H.backingFileSize),
    clusterBits,
    size: u64be(v, L.H.size),
    cryptMethod: v.getUint32(L.H.cryptMethod),
    l1Size: v.getUint32(L.H.l1Size),
    l1TableOffset: u64be(v, L.H.l1TableOffset),
    refcountTableOffset: u64be(v, L.H.refcountTableOffset),
    refcountTableClusters: v.getUint32(L.H.refcountTableClusters),
    nbSnapshots: v.getUint32(L.H.nbSnapshots),
    snapshotsOffset: u64be(v, L.H.snapshotsOffset),
    incompatible: 0,
    compatible: 0,
    autoclear: 0,
    refcountOrder: 4,
    headerLength: L.V2_HEADER_LENGTH,
    compressionType: L.COMPRESSION_ZLIB,
    featureNames: new Map(),
  };

  if (version === 3) {
    if (bytes.length < L.V3_MIN_HEADER_LENGTH) throw fail('qcow2 header', 0, 'file is shorter than a version 3 header');
    h.headerLength = v.getUint32(L.H.headerLength);
    if (h.headerLength < L.V3_MIN_HEADER_LENGTH) throw fail('qcow2 header', L.H.headerLength, 'qcow2 header too short');
    if (h.headerLength > clusterSize) throw fail('qcow2 header', L.H.headerLength, 'qcow2 header exceeds cluster size');
    h.incompatible = v.getUint32(L.H.incompatibleFeatures + 4);
    h.compatible = v.getUint32(L.H.compatibleFeatures + 4);
    h.autoclear = v.getUint32(L.H.autoclearFeatures + 4);
    h.refcountOrder = v.getUint32(L.H.refcountOrder);
    if (h.headerLength > L.H.compressionType) h.compressionType = bytes[L.H.compressionType] ?? 0;
    if (v.getUint32(L.H.incompatibleFeatures) !== 0 || (h.incompatible & ~L.INCOMPAT_KNOWN) !== 0) {
      h.featureNames = parseExtensions(bytes, h, file).featureNames;
      throw new UnsupportedFeatureError(file, unknownFeatures(v, h.featureNames));
    }
  }

  if (h.refcountOrder > 6) throw fail('qcow2 header', L.H.refcountOrder, 'Reference count entry width too large; may not exceed 64 bits');
  if ((h.incompatible & L.INCOMPAT_COMPRESSION) === 0 && h.compressionType !== L.COMPRESSION_ZLIB) {
    throw fail('qcow2 header', L.H.compressionType, 'Compression type incompatible feature bit must be set for a non-zlib compression type');
  }
  if (h.compressionType !== L.COMPRESSION_ZLIB && h.compressionType !== L.COMPRESSION_ZSTD) {
    throw new UnsupportedFeatureError(file, `compression type ${h.compressionType}`);
  }
  if (h.cryptMethod !== 0) throw new UnsupportedFeatureError(file, 'encryption');
  if ((h.incompatible & L.INCOMPAT_EXTL2) && clusterBits < 14) {
    throw fail('qcow2 header', L.H.clusterBits, 'Extended L2 entries are only supported with cluster sizes of at least 16384 bytes');
  }

  const ext = parseExtensions(bytes, h, file);
  h.backingFormat = ext.backingFormat;
  h.dataFile = ext.dataFile;
  h.bitmaps = ext.bitmaps;
  h.featureNames = ext.featureNames;
  if ((h.incompatible & L.INCOMPAT_DATA_FILE) && h.dataFile === undefined) {
    throw fail('qcow2 header', h.headerLength, 'Missing data file name for an image with an external data file');
  }
  return h;
}

/** The backing file name, stored at backingFileOffset within the first cluster. */
export function parseBackingName(bytes: Uint8Array, h: Qcow2Header, file: string): string | undefined {
  if (h.backingFileOffset === 0 || h.backingFileSize === 0) return undefined;
  if (h.backingFileSize > L.MAX_BACKING_NAME || h.backingFileOffset + h.backingFileSize > Math.min(bytes.length, 2 ** h.clusterBits)) {
    throw new ImageFormatError(file, 'backing file name', h.backingFileOffset, 'Backing file name too long or outside the header cluster');
  }
  return latin.decode(bytes.subarray(h.backingFileOffset, h.backingFileOffset + h.backingFileSize));
}

interface Extensions {
  backingFormat?: string;
  dataFile?: string;
  bitmaps?: BitmapsExtension;
  featureNames: Map<string, string>;
}

function parseExtensions(bytes: Uint8Array, h: Qcow2Header, file: string): Extensions {
  const v = viewOf(bytes);
  const out: Extensions = { featureNames: new Map() };
  const end = Math.min(bytes.length, 2 ** h.clusterBits);
  let off = h.headerLength;
  // The backing file name, when present, ends the extension area.
  const limit = h.backingFileOffset > 0 ? Math.min(end, h.backingFileOffset) : end;
  while (off + 8 <= limit) {
    const type = v.getUint32(off);
    const len = v.getUint32(off + 4);
    const data = off + 8;
    if (type === L.EXT_END) break;
    if (data + len > limit) throw new ImageFormatError(file, 'qcow2 header extension', off, 'extension runs past the header area');
    const text = () => latin.decode(bytes.subarray(data, data + len)).replace(/\0.*$/s, '');
    if (type === L.EXT_BACKING_FORMAT) out.backingFormat = text();
    else if (type === L.EXT_DATA_FILE) out.dataFile = text();
    else if (type === L.EXT_BITMAPS && len === L.BITMAPS_EXT.length && h.autoclear & L.AUTOCLEAR_BITMAPS) {
      out.bitmaps = {
        count: v.getUint32(data + L.BITMAPS_EXT.nbBitmaps),
        directorySize: u64be(v, data + L.BITMAPS_EXT.directorySize),
        directoryOffset: u64be(v, data + L.BITMAPS_EXT.directoryOffset),
      };
    }
    else if (type === L.EXT_FEATURE_NAMES) {
      for (let e = data; e + 48 <= data + len; e += 48) {
        const name = latin.decode(bytes.subarray(e + 2, e + 48)).replace(/\0.*$/s, '');
        out.featureNames.set(`${bytes[e]}:${bytes[e + 1]}`, name);
      }
    }
    off = data + Math.ceil(len / 8) * 8;
  }
  return out;
}

function unknownFeatures(v: DataView, names: Map<string, string>): string {
  const found: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    const word = bit < 32 ? v.getUint32(L.H.incompatibleFeatures + 4) : v.getUint32(L.H.incompatibleFeatures);
    if (bit < 32 && (L.INCOMPAT_KNOWN >>> bit) & 1) continue;
    if ((word >>> bit % 32) & 1) found.push(names.get(`0:${bit}`) ?? `Unknown incompatible feature: ${bit}`);
  }
  return found.join(', ');
}

export interface RawSnapshot {
  id: string;
  name: string;
  l1TableOffset: number;
  l1Size: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  vmStateSize: number;
  diskSize?: number;
  icount?: number;
  /** Bytes this entry occupies in the table. */
  length: number;
  /** The same without the padding to the next entry (qemu measures the table up to the last entry's end). */
  usedLength: number;
}

/**
 * Parses one snapshot table entry at `off` in `bytes`; returns undefined when
 * `bytes` does not hold the whole entry yet, so the caller can read more.
 * `length` includes the padding to the next 8-byte boundary.
 */
export function parseSnapshotEntry(bytes: Uint8Array, off: number, file: string, fileOffset: number): RawSnapshot | undefined {
  if (off + L.SN.fixedLength > bytes.length) return undefined;
  const v = viewOf(bytes);
  const extra = v.getUint32(off + L.SN.extraDataSize);
  const idLen = v.getUint16(off + L.SN.idStrSize);
  const nameLen = v.getUint16(off + L.SN.nameSize);
  if (extra > 1024) throw new ImageFormatError(file, 'snapshot table entry', fileOffset, 'Too much extra metadata in snapshot table entry');
  const body = off + L.SN.fixedLength;
  const used = L.SN.fixedLength + extra + idLen + nameLen;
  // The padding of the last entry may be missing when the table ends the file.
  if (off + used > bytes.length) return undefined;
  const length = Math.ceil(used / 8) * 8;
  const sn: RawSnapshot = {
    l1TableOffset: u64be(v, off + L.SN.l1TableOffset),
    l1Size: v.getUint32(off + L.SN.l1Size),
    dateSec: v.getUint32(off + L.SN.dateSec),
    dateNsec: v.getUint32(off + L.SN.dateNsec),
    vmClockNsec: u64be(v, off + L.SN.vmClockNsec),
    vmStateSize: v.getUint32(off + L.SN.vmStateSize),
    id: latin.decode(bytes.subarray(body + extra, body + extra + idLen)),
    name: latin.decode(bytes.subarray(body + extra + idLen, body + extra + idLen + nameLen)),
    length,
    usedLength: used,
  };
  if (extra >= 8) sn.vmStateSize = u64be(v, body + L.SN.extraVmStateSizeLarge);
  if (extra >= 16) sn.diskSize = u64be(v, body + L.SN.extraDiskSize);
  if (extra >= 24) {
    // icount is -1 (all ones) when the snapshot was taken without record/replay.
    const hi = v.getUint32(body + L.SN.extraIcount);
    const lo = v.getUint32(body + L.SN.extraIcount + 4);
    if (!(hi === 0xffffffff && lo === 0xffffffff)) sn.icount = hi * 0x1_0000_0000 + lo;
  }
  return sn;
}
