/**
 * The hot-path kernels and where their memory lives. WebAssembly kernels work
 * on a fixed arena of their own memory; buffers that I/O fills are carved from
 * that arena, so file bytes land where the kernel reads them, with no copy.
 * The arena never grows, because growing would detach every view into it.
 * Until `loadWasmKernels` succeeds, the TypeScript twins run.
 */
import { isZeroTs } from './zero.ts';
import { firstDifferenceTs } from './compare.ts';

export interface Kernels {
  readonly name: string;
  /** A buffer for I/O that the kernels read without copying. */
  alloc(bytes: number): Uint8Array;
  /** Returns a buffer from `alloc` for reuse. */
  free(buf: Uint8Array): void;
  isZero(buf: Uint8Array): boolean;
  /** Offset of the first differing byte of two equally long buffers, or -1. */
  firstDifference(a: Uint8Array, b: Uint8Array): number;
}

const tsKernels: Kernels = {
  name: 'typescript',
  alloc: (bytes) => new Uint8Array(bytes),
  free: () => {},
  isZero: isZeroTs,
  firstDifference: firstDifferenceTs,
};

let active: Kernels = tsKernels;

export function kernels(): Kernels {
  return active;
}

/** The arena: enough for a few I/O buffers of the largest size the engine uses. */
const ARENA_BYTES = 32 * 1024 * 1024;
const PAGE = 64 * 1024;
/** The first page is left to the kernels' own static data (lookup tables); the arena starts above it. */
const STATIC_BYTES = PAGE;

interface KernelExports {
  isZero(ptr: number, len: number): number;
  firstDifference(a: number, b: number, len: number): number;
}

/**
 * Instantiates the SIMD build if this engine validates it, else the scalar
 * one, and makes it the active kernel set.
 */
export async function loadWasmKernels(simd: BufferSource, scalar: BufferSource): Promise<Kernels> {
  const pages = (STATIC_BYTES + ARENA_BYTES) / PAGE;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  const useSimd = WebAssembly.validate(simd);
  const { instance } = await WebAssembly.instantiate(useSimd ? simd : scalar, { env: { memory } });
  const exp = instance.exports as unknown as KernelExports;
  const heap = new Uint8Array(memory.buffer);
  // A first-fit free list over the arena; buffers are few and large.
  const freeList: { start: number; end: number }[] = [{ start: STATIC_BYTES, end: STATIC_BYTES + ARENA_BYTES }];
  active = {
    name: useSimd ? 'wasm-simd' : 'wasm-scalar',
    alloc(bytes) {
      const size = Math.ceil(bytes / 64) * 64;
      const slot = freeList.find((s) => s.end - s.start >= size);
      if (!slot) return new Uint8Array(bytes);
      const start = slot.start;
      slot.start += size;
      return heap.subarray(start, start + bytes);
    },
    free(buf) {
      if (buf.buffer !== memory.buffer) return;
      const start = buf.byteOffset;
      freeList.push({ start, end: start + Math.ceil(buf.length / 64) * 64 });
      freeList.sort((a, b) => a.start - b.start);
      for (let i = freeList.length - 1; i > 0; i--) {
        if (freeList[i - 1]!.end === freeList[i]!.start) {
          freeList[i - 1]!.end = freeList[i]!.end;
          freeList.splice(i, 1);
        }
      }
    },
    isZero(buf) {
      if (buf.buffer !== memory.buffer) return isZeroTs(buf);
      return exp.isZero(buf.byteOffset, buf.length) === 1;
    },
    firstDifference(a, b) {
      if (a.buffer !== memory.buffer || b.buffer !== memory.buffer) return firstDifferenceTs(a, b);
      return exp.firstDifference(a.byteOffset, b.byteOffset, Math.min(a.length, b.length));
    },
  };
  return active;
}
