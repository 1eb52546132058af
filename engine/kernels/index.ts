/**
 * The hot-path kernels and where their memory lives. WebAssembly kernels work
 * on a fixed arena of their own memory; buffers that I/O fills are carved from
 * that arena, so file bytes land where the kernel reads them, with no copy.
 * The arena never grows, because growing would detach every view into it.
 * Until `loadWasmKernels` succeeds, the TypeScript twins run; a buffer that
 * does not live in the arena always goes to its twin.
 */
import { isZeroTs } from './zero.ts';
import { firstDifferenceTs } from './compare.ts';
import { Xxh32 } from './xxh32.ts';
import { crc32c as crc32cTs } from '../codecs/crc32c.ts';

export interface Kernels {
  readonly name: string;
  /** A buffer for I/O that the kernels read without copying. */
  alloc(bytes: number): Uint8Array;
  /** Returns a buffer from `alloc` for reuse. */
  free(buf: Uint8Array): void;
  isZero(buf: Uint8Array): boolean;
  /** Offset of the first differing byte of two equally long buffers, or -1. */
  firstDifference(a: Uint8Array, b: Uint8Array): number;
  /** CRC-32C of `buf`, continuing `previous` (an earlier result; 0 to start). */
  crc32c(buf: Uint8Array, previous?: number): number;
  /** A streaming xxHash32: `update` with the pieces in order, then `digest`. */
  xxh32(seed?: number): Xxh32;
  /** The memory `alloc` carves buffers from, when it is shared: other threads can read them in place. */
  readonly shared?: SharedArrayBuffer;
}

const tsKernels: Kernels = {
  name: 'typescript',
  alloc: (bytes) => new Uint8Array(bytes),
  free: () => {},
  isZero: isZeroTs,
  firstDifference: firstDifferenceTs,
  crc32c: crc32cTs,
  xxh32: (seed) => new Xxh32(seed),
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
/** Below this many bytes a call into WebAssembly gains nothing over the twin's loop. */
const SMALL = 64;

interface KernelExports {
  isZero(ptr: number, len: number): number;
  firstDifference(a: number, b: number, len: number): number;
  crc32c(ptr: number, len: number, crc: number): number;
  xxh32State(): number;
  xxh32Stripes(ptr: number, len: number): void;
}

export interface LoadOptions {
  /** Arena size in bytes (a multiple of 64 KiB); benchmarks take more than the engine needs. */
  arenaBytes?: number;
  /**
   * The SIMD build for shared memory, taken where this engine validates it
   * and may share memory (Node): I/O buffers can then be written to a file
   * by another thread without a copy.
   */
  shared?: BufferSource;
}

/** A shared memory and the build for it, or undefined where either is refused. */
function sharedMemory(build: BufferSource | undefined, pages: number): WebAssembly.Memory | undefined {
  if (!build || !WebAssembly.validate(build)) return undefined;
  try {
    return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  } catch {
    // A browser page that is not cross-origin isolated.
    return undefined;
  }
}

/**
 * Instantiates the SIMD build if this engine validates it, else the scalar
 * one, and makes it the active kernel set.
 */
export async function loadWasmKernels(simd: BufferSource, scalar: BufferSource, options: LoadOptions = {}): Promise<Kernels> {
  const arenaBytes = options.arenaBytes ?? ARENA_BYTES;
  const pages = (STATIC_BYTES + arenaBytes) / PAGE;
  const shared = sharedMemory(options.shared, pages);
  const memory = shared ?? new WebAssembly.Memory({ initial: pages, maximum: pages });
  const useSimd = shared !== undefined || WebAssembly.validate(simd);
  const { instance } = await WebAssembly.instantiate(shared ? options.shared! : useSimd ? simd : scalar, { env: { memory } });
  const exp = instance.exports as unknown as KernelExports;
  const heap = new Uint8Array(memory.buffer);
  const inArena = (buf: Uint8Array) => buf.buffer === memory.buffer;
  const lanes = new Int32Array(memory.buffer, exp.xxh32State(), 4);
  // A first-fit free list over the arena; buffers are few and large.
  const freeList: { start: number; end: number }[] = [{ start: STATIC_BYTES, end: STATIC_BYTES + arenaBytes }];

  /** xxHash32 whose whole stripes of arena buffers run in the kernel; the accumulators pass through `lanes`. */
  class WasmXxh32 extends Xxh32 {
    protected override stripes(d: Uint8Array, from: number, to: number): void {
      if (!inArena(d) || to - from < SMALL) return super.stripes(d, from, to);
      lanes.set(this.lanes);
      exp.xxh32Stripes(d.byteOffset + from, to - from);
      this.lanes.set(lanes);
    }
  }

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
      if (!inArena(buf)) return;
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
      if (!inArena(buf)) return isZeroTs(buf);
      return exp.isZero(buf.byteOffset, buf.length) === 1;
    },
    firstDifference(a, b) {
      if (!inArena(a) || !inArena(b)) return firstDifferenceTs(a, b);
      return exp.firstDifference(a.byteOffset, b.byteOffset, Math.min(a.length, b.length));
    },
    crc32c(buf, previous = 0) {
      if (!inArena(buf) || buf.length < SMALL) return crc32cTs(buf, previous);
      return exp.crc32c(buf.byteOffset, buf.length, previous) >>> 0;
    },
    xxh32: (seed) => new WasmXxh32(seed),
    shared: shared ? (memory.buffer as unknown as SharedArrayBuffer) : undefined,
  };
  return active;
}
