/** Small pieces shared by drivers. */
import { SnapshotNotFoundError } from '../errors.ts';
import type { ByteSource } from '../io/source.ts';
import type { Layer } from '../driver.ts';

/** For formats without internal snapshots. */
export async function noSnapshot(source: ByteSource): Promise<Layer> {
  throw new SnapshotNotFoundError(source.name);
}

/** Reads a big-endian u64 as a number; past 2^53 it is inexact, which callers' range checks against the file size reject. */
export function u64be(view: DataView, offset: number): number {
  return view.getUint32(offset) * 0x1_0000_0000 + view.getUint32(offset + 4);
}

export function u64le(view: DataView, offset: number): number {
  return view.getUint32(offset + 4, true) * 0x1_0000_0000 + view.getUint32(offset, true);
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
