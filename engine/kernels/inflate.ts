/**
 * The WebAssembly deflate decoder (asm/inflate/) and its memory. The module
 * has a memory of its own, apart from the kernels' arena; above its static
 * tables this wrapper keeps one output region and, after it, one input region.
 * Compressed bytes are copied in (at most two clusters), decoded, and the
 * output copied to the caller's buffer: the caller's buffer lives in another
 * memory, and the copy costs a few percent of the decode. The regions grow to
 * the largest unit seen (the engine's units are at most 2 MiB).
 * Until `loadWasmInflate` succeeds, engine/codecs/deflate.ts uses fflate.
 */

export interface Inflater {
  readonly name: string;
  /** Raw deflate from `input` into `out`: the bytes produced (at most `out.length`), or a negative error code. */
  inflateRaw(input: Uint8Array, out: Uint8Array): number;
  /** The same for a zlib stream (header checked, Adler-32 not). */
  inflateZlib(input: Uint8Array, out: Uint8Array): number;
}

/** The error codes of asm/inflate/index.ts, worded. */
const MESSAGES: ReadonlyMap<number, string> = new Map([
  [-1, 'the stream ends before the output is complete'],
  [-2, 'invalid block type'],
  [-3, 'stored block length does not match its complement'],
  [-4, 'too many length or distance codes'],
  [-5, 'invalid code-length code'],
  [-6, 'code-length repeat with nothing to repeat or past the end'],
  [-7, 'no end-of-block code'],
  [-8, 'invalid literal/length code lengths'],
  [-9, 'invalid distance code lengths'],
  [-10, 'invalid literal/length code'],
  [-11, 'invalid distance code'],
  [-12, 'distance reaches before the start of the output'],
  [-13, 'invalid zlib header'],
  [-14, 'zlib stream needs a preset dictionary'],
]);

export function inflateErrorMessage(code: number): string {
  return MESSAGES.get(code) ?? `error ${code}`;
}

interface InflateExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  inflate(inPtr: number, inLen: number, outPtr: number, outLen: number): number;
  inflateZlib(inPtr: number, inLen: number, outPtr: number, outLen: number): number;
}

const PAGE = 64 * 1024;
const align = (n: number) => Math.ceil(n / 64) * 64;

/** Instantiates one build of the decoder, without making it the active one. */
export async function instantiateInflate(bytes: BufferSource, name: string): Promise<Inflater> {
  const { instance } = await WebAssembly.instantiate(bytes, {});
  const exp = instance.exports as unknown as InflateExports;
  const base = align(exp.heapBase());
  let heap = new Uint8Array(exp.memory.buffer);

  /** Copies `input` in, decodes with `fn`, copies what was produced out. */
  const run = (fn: InflateExports['inflate'], input: Uint8Array, out: Uint8Array): number => {
    const inPtr = base + align(out.length);
    const need = inPtr + input.length;
    if (need > exp.memory.buffer.byteLength) {
      exp.memory.grow(Math.ceil((need - exp.memory.buffer.byteLength) / PAGE));
    }
    // Growing detaches the old buffer.
    if (heap.buffer !== exp.memory.buffer) heap = new Uint8Array(exp.memory.buffer);
    heap.set(input, inPtr);
    const produced = fn(inPtr, input.length, base, out.length);
    if (produced > 0) out.set(heap.subarray(base, base + produced));
    return produced;
  };
  return {
    name,
    inflateRaw: (input, out) => run(exp.inflate, input, out),
    inflateZlib: (input, out) => run(exp.inflateZlib, input, out),
  };
}

let active: Inflater | undefined;

/** The loaded decoder, if any. */
export function wasmInflater(): Inflater | undefined {
  return active;
}

/** Instantiates the SIMD build if this engine validates it, else the scalar one, and makes it the active decoder. */
export async function loadWasmInflate(simd: BufferSource, scalar: BufferSource): Promise<Inflater> {
  const useSimd = WebAssembly.validate(simd);
  active = await instantiateInflate(useSimd ? simd : scalar, useSimd ? 'wasm-simd' : 'wasm-scalar');
  return active;
}
