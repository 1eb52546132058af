/**
 * Zstandard decoding of one compressed unit (a qcow2 cluster) into a
 * caller-owned buffer. The stored extent is rounded up to whole sectors, so
 * the frame is measured first from its block headers (RFC 8878, section 3.1)
 * and only the frame itself is handed to the decoder.
 */
import { decompress } from 'fzstd';
import { CodecError } from './deflate.ts';

const MAGIC = 0xfd2fb528;

/** Length in bytes of the Zstandard frame at the start of `buf`. */
export function zstdFrameLength(buf: Uint8Array): number {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length < 6 || v.getUint32(0, true) !== MAGIC) throw new CodecError('not a zstd frame');
  const fhd = buf[4]!;
  const singleSegment = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const dictIdBytes = [0, 1, 2, 4][fhd & 3]!;
  const fcsCode = fhd >> 6;
  const fcsBytes = fcsCode === 0 ? singleSegment : 1 << fcsCode;
  let pos = 5 + (singleSegment ? 0 : 1) + dictIdBytes + fcsBytes;
  for (;;) {
    if (pos + 3 > buf.length) throw new CodecError('zstd frame truncated');
    const header = buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16);
    const last = header & 1;
    const type = (header >> 1) & 3;
    const size = header >>> 3;
    if (type === 3) throw new CodecError('reserved zstd block type');
    pos += 3 + (type === 1 ? 1 : size);
    if (last) break;
  }
  pos += checksum ? 4 : 0;
  if (pos > buf.length) throw new CodecError('zstd frame truncated');
  return pos;
}

export function zstdDecodeInto(input: Uint8Array, out: Uint8Array): void {
  let produced: Uint8Array;
  try {
    const frame = input.subarray(0, zstdFrameLength(input));
    produced = decompress(frame, out);
  } catch (e) {
    if (e instanceof CodecError) throw e;
    throw new CodecError(`corrupt zstd stream: ${(e as Error).message}`);
  }
  if (produced.length !== out.length) {
    throw new CodecError(`zstd stream decodes to ${produced.length} bytes, expected ${out.length}`);
  }
}
