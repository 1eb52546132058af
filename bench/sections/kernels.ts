/** The WebAssembly kernels against their TypeScript twins and memory-copy bandwidth. */
import { readFileSync } from 'node:fs';
import { isZeroTs } from '../../engine/kernels/zero.ts';
import { firstDifferenceTs } from '../../engine/kernels/compare.ts';
import { loadWasmKernels } from '../../engine/kernels/index.ts';
import { MiB, rate, throughput } from '../lib.ts';

export async function kernels(): Promise<void> {
  const k = await loadWasmKernels(readFileSync('build/wasm/kernels-simd.wasm'), readFileSync('build/wasm/kernels-scalar.wasm'));
  const size = 8 * MiB;
  const a = k.alloc(size);
  const b = k.alloc(size);
  a.fill(0);
  b.fill(0);
  const copyDst = new Uint8Array(size);
  copyDst.set(a);
  throughput('memory copy', rate(size, () => copyDst.set(a)));
  throughput(`zero detect (${k.name})`, rate(size, () => k.isZero(a)));
  throughput('zero detect (typescript)', rate(size, () => isZeroTs(a)));
  throughput(`first difference (${k.name})`, rate(size, () => k.firstDifference(a, b)));
  throughput('first difference (typescript)', rate(size, () => firstDifferenceTs(a, b)));
  k.free(a);
  k.free(b);
}
