/**
 * Raw-deflate (RFC 1951) decoding of one compressed unit into a caller-owned
 * buffer of exactly the unit's size. The output buffer is the bound, so a
 * crafted cluster cannot become a decompression bomb. A stream that ends
 * before filling the unit is an error; one that goes on past it is cut at the
 * bound, as qemu accepts it (the stored length is only known to the sector).
 * The WebAssembly decoder (engine/kernels/inflate.ts) does the work once it is
 * loaded; fflate until then.
 */
import { inflateSync, unzlibSync } from 'fflate';
import { inflateErrorMessage, wasmInflater } from '../kernels/inflate.ts';

export class CodecError extends Error {}

/** Turns the WebAssembly decoder's result into the unit, or a CodecError. */
function checkProduced(kind: string, produced: number, out: Uint8Array): void {
  if (produced < 0) throw new CodecError(`corrupt ${kind} stream: ${inflateErrorMessage(produced)}`);
  if (produced < out.length) throw new CodecError(`${kind} stream decodes to ${produced} bytes, expected ${out.length}`);
}

export function inflateRawInto(input: Uint8Array, out: Uint8Array): void {
  const wasm = wasmInflater();
  if (wasm) return checkProduced('deflate', wasm.inflateRaw(input, out), out);
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

/**
 * zlib (RFC 1950) decoding into `out`, with the bounds of `inflateRawInto`: the
 * 2-byte header is checked, the Adler-32 trailer is not (the bound may stop
 * decoding before the trailer; fflate skips it too), and a stream with no
 * deflate data at all is refused rather than read as zeros. VMDK
 * stream-optimized grains are zlib streams.
 */
export function inflateZlibInto(input: Uint8Array, out: Uint8Array): void {
  // Header (2) + trailer (4): anything no longer holds no deflate block.
  if (input.length <= 6) throw new CodecError(`zlib stream of ${input.length} bytes is too short`);
  const wasm = wasmInflater();
  if (wasm) return checkProduced('zlib', wasm.inflateZlib(input, out), out);
  let produced: Uint8Array;
  try {
    produced = unzlibSync(input, { out });
  } catch (e) {
    throw new CodecError(`corrupt zlib stream: ${(e as Error).message}`);
  }
  if (produced.length < out.length || produced.buffer !== out.buffer) {
    throw new CodecError(`zlib stream decodes to ${produced.length} bytes, expected ${out.length}`);
  }
}
