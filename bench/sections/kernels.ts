/**
 * The WebAssembly kernels against their TypeScript twins, memory-copy
 * bandwidth and the C library's memcmp, at three sizes: one that fits in a
 * core's L2 cache, one that fits in the shared L3, and one far larger than any
 * cache (memory bandwidth).
 */
import { readFileSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { isZeroTs } from '../../engine/kernels/zero.ts';
import { firstDifferenceTs } from '../../engine/kernels/compare.ts';
import { Xxh32 } from '../../engine/kernels/xxh32.ts';
import { crc32c } from '../../engine/codecs/crc32c.ts';
import { loadWasmKernels } from '../../engine/kernels/index.ts';
import { MiB, rate, throughput } from '../lib.ts';

const SIZES = [256 * 1024, 8 * MiB, 256 * MiB];
const label = (bytes: number) => (bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / 1024} KiB`);

export async function kernels(): Promise<void> {
  const largest = SIZES[SIZES.length - 1]!;
  // Room for the three buffers of the largest size in the arena.
  const k = await loadWasmKernels(readFileSync('build/wasm/kernels-simd.wasm'), readFileSync('build/wasm/kernels-scalar.wasm'), {
    arenaBytes: 3 * largest + MiB,
  });
  const [a, b, c] = [k.alloc(largest), k.alloc(largest), k.alloc(largest)];
  // Every page written first: an untouched page reads as the shared zero page, which is always cached.
  randomFillSync(a);
  b.set(a);
  c.fill(0);
  for (const size of SIZES) {
    const [x, y, zeros] = [a.subarray(0, size), b.subarray(0, size), c.subarray(0, size)];
    // Fewer passes over the largest buffers, where one pass of a twin takes a good part of a second.
    const passes = size > 8 * MiB ? 5 : 15;
    const at = label(size);
    throughput(`memory copy ${at}`, rate(size, () => zeros.set(x), passes));
    zeros.fill(0);
    throughput(`zero detect ${at} (${k.name})`, rate(size, () => k.isZero(zeros), passes));
    throughput(`zero detect ${at} (typescript)`, rate(size, () => isZeroTs(zeros), passes));
    // The C library's memcmp (behind Buffer.compare): what the first-difference target is measured against.
    throughput(`memcmp ${at} (Buffer.compare)`, rate(size, () => Buffer.compare(x, y), passes));
    throughput(`first difference ${at} (${k.name})`, rate(size, () => k.firstDifference(x, y), passes));
    throughput(`first difference ${at} (typescript)`, rate(size, () => firstDifferenceTs(x, y), passes));
    throughput(`crc32c ${at} (${k.name})`, rate(size, () => k.crc32c(x), passes));
    throughput(`crc32c ${at} (typescript)`, rate(size, () => crc32c(x), passes));
    throughput(`xxh32 ${at} (${k.name})`, rate(size, () => k.xxh32().update(x).digest(), passes));
    throughput(`xxh32 ${at} (typescript)`, rate(size, () => new Xxh32().update(x).digest(), passes));
  }
  for (const buf of [a, b, c]) k.free(buf);
}
