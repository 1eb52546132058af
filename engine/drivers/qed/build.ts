/**
 * Pure builders for the QED structures a writer lays down (qemu's
 * docs/interop/qed_spec.rst): the header with the backing file name after
 * it, and windows of table entries. They return bytes; writing them is the
 * writer's job.
 */
import { viewOf } from '../common.ts';
import * as L from './layout.ts';

export interface HeaderFields {
  clusterSize: number;
  tableSize: number;
  /** Clusters the header (and the backing file name) take. */
  headerSize: number;
  l1TableOffset: number;
  imageSize: number;
  backing?: { name: Uint8Array; rawNoProbe: boolean };
}

/** The header clusters' bytes that carry something: the 64-byte header, then the backing file name. */
export function buildHeader(f: HeaderFields): Uint8Array {
  const bytes = new Uint8Array(L.HEADER_LENGTH + (f.backing?.name.length ?? 0));
  const v = viewOf(bytes);
  v.setUint32(L.H.magic, L.MAGIC, true);
  v.setUint32(L.H.clusterSize, f.clusterSize, true);
  v.setUint32(L.H.tableSize, f.tableSize, true);
  v.setUint32(L.H.headerSize, f.headerSize, true);
  let features = 0;
  if (f.backing) {
    features |= L.F_BACKING_FILE;
    // "raw, no probe": the backing file is read as raw whatever its content.
    if (f.backing.rawNoProbe) features |= L.F_BACKING_FORMAT_NO_PROBE;
    v.setUint32(L.H.backingFilenameOffset, L.HEADER_LENGTH, true);
    v.setUint32(L.H.backingFilenameSize, f.backing.name.length, true);
    bytes.set(f.backing.name, L.HEADER_LENGTH);
  }
  v.setBigUint64(L.H.features, BigInt(features), true);
  v.setBigUint64(L.H.l1TableOffset, BigInt(f.l1TableOffset), true);
  v.setBigUint64(L.H.imageSize, BigInt(f.imageSize), true);
  return bytes;
}

/** Clusters the header takes when the backing file name of `nameBytes` follows it. */
export const headerClusters = (clusterSize: number, nameBytes: number): number => Math.ceil((L.HEADER_LENGTH + nameBytes) / clusterSize);

/**
 * The largest image the tables can map (every L1 entry names an L2 table,
 * every L2 entry a cluster), computed modulo 2^64 as qemu computes it: for
 * the largest clusters and tables the product wraps, to zero, and qemu then
 * refuses to create or open any such image.
 */
export function maxImageSize(clusterSize: number, tableSize: number): number {
  const entries = BigInt((tableSize * clusterSize) / L.ENTRY_BYTES);
  return Number(BigInt.asUintN(64, entries * entries * BigInt(clusterSize)));
}

/** Table entries are u64 offsets (or 1 for a zero cluster). */
export function setEntry(window: DataView, slot: number, value: number): void {
  window.setBigUint64(slot * L.ENTRY_BYTES, BigInt(value), true);
}
