/**
 * Raw-deflate (RFC 1951) decoding of one compressed unit into a caller-owned
 * buffer of exactly the unit's size. The output buffer is the bound, so a
 * crafted cluster cannot become a decompression bomb. A stream that ends
 * before filling the unit is an error; one that goes on past it is cut at the
 * bound, as qemu accepts it (the stored length is only known to the sector).
 */
import { inflateSync } from 'fflate';

export class CodecError extends Error {}

export function inflateRawInto(input: Uint8Array, out: Uint8Array): void {
  let produced: Uint8Array;
  try {
    produced = inflateSync(input, { out });
  } catch (e) {
    throw new CodecError(`corrupt deflate stream: ${(e as Error).message}`);
  }
  if (produced.length < out.length || produced.buffer !== out.buffer) {
    throw new CodecError(`deflate stream decodes to ${produced.length} bytes, expected ${out.length}`);
  }
}
