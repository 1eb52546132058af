/**
 * Pure parsers for the VHDX log (2.3): entry headers, zero and data
 * descriptors, and data sectors. An entry is one 4 KiB sector holding the
 * 64-byte header and the first descriptors, more sectors of descriptors if
 * needed, then one data sector per data descriptor. Finding the entries to
 * replay and replaying them is `replay.ts`.
 */
import { u64le, viewOf } from '../common.ts';
import { guidAt } from './header.ts';
import * as L from './layout.ts';

export interface LogEntryHeader {
  checksum: number;
  entryLength: number;
  /** Byte offset, from the start of the log, of the oldest entry still to replay. */
  tail: number;
  sequenceNumber: bigint;
  descriptorCount: number;
  logGuid: string;
  flushedFileOffset: number;
  lastFileOffset: number;
}

/** 2.3.1.1: the header at the start of `sector`, or undefined when the sector does not start an entry. */
export function parseEntryHeader(sector: Uint8Array): LogEntryHeader | undefined {
  const v = viewOf(sector);
  if (v.getUint32(L.LE.signature, true) !== L.LOG_ENTRY_SIGNATURE) return undefined;
  return {
    checksum: v.getUint32(L.LE.checksum, true),
    entryLength: v.getUint32(L.LE.entryLength, true),
    tail: v.getUint32(L.LE.tail, true),
    sequenceNumber: v.getBigUint64(L.LE.sequenceNumber, true),
    descriptorCount: v.getUint32(L.LE.descriptorCount, true),
    logGuid: guidAt(sector, L.LE.logGuid),
    flushedFileOffset: u64le(v, L.LE.flushedFileOffset),
    lastFileOffset: u64le(v, L.LE.lastFileOffset),
  };
}

/** Sectors that hold the header and `count` descriptors (the header takes the room of two). */
export function descriptorSectors(count: number): number {
  return Math.ceil((count + 2) / L.DESCRIPTORS_PER_SECTOR);
}

/** Where descriptor `i` of an entry is: its sector within the entry and its offset in that sector. */
export function descriptorPlace(i: number): { sector: number; at: number } {
  const slot = i + 2;
  return { sector: Math.floor(slot / L.DESCRIPTORS_PER_SECTOR), at: (slot % L.DESCRIPTORS_PER_SECTOR) * L.DESCRIPTOR_SIZE };
}

export type LogDescriptor =
  | { kind: 'zero'; fileOffset: number; length: number; sequenceNumber: bigint }
  | { kind: 'data'; fileOffset: number; leading: Uint8Array; trailing: Uint8Array; sequenceNumber: bigint };

/** 2.3.1.3 and 2.3.1.4: the descriptor at `at` in `sector`, or undefined when its signature is neither. */
export function parseDescriptor(sector: Uint8Array, at: number): LogDescriptor | undefined {
  const v = viewOf(sector);
  const signature = v.getUint32(at + L.D.signature, true);
  const fileOffset = u64le(v, at + L.D.fileOffset);
  const sequenceNumber = v.getBigUint64(at + L.D.sequenceNumber, true);
  if (signature === L.ZERO_DESCRIPTOR_SIGNATURE) {
    return { kind: 'zero', fileOffset, length: u64le(v, at + L.D.zeroLength), sequenceNumber };
  }
  if (signature === L.DATA_DESCRIPTOR_SIGNATURE) {
    return {
      kind: 'data',
      fileOffset,
      leading: sector.slice(at + L.D.leadingBytes, at + L.D.leadingBytes + L.LEADING_BYTES),
      trailing: sector.slice(at + L.D.trailingBytes, at + L.D.trailingBytes + L.TRAILING_BYTES),
      sequenceNumber,
    };
  }
  return undefined;
}

/** 2.3.1.5: the sequence number a data sector carries, or undefined when it is not a data sector. */
export function dataSectorSequence(sector: Uint8Array): bigint | undefined {
  const v = viewOf(sector);
  if (v.getUint32(L.DS.signature, true) !== L.DATA_SECTOR_SIGNATURE) return undefined;
  return (BigInt(v.getUint32(L.DS.sequenceHigh, true)) << 32n) | BigInt(v.getUint32(L.DS.sequenceLow, true));
}

/** 2.3.1.4: the 4 KiB the data sector stands for: leading bytes, its 4084 data bytes, trailing bytes. */
export function assembleSector(dataSector: Uint8Array, leading: Uint8Array, trailing: Uint8Array, out: Uint8Array): void {
  out.set(dataSector.subarray(0, L.LOG_SECTOR));
  out.set(leading, 0);
  out.set(trailing, L.LOG_SECTOR - L.TRAILING_BYTES);
}
