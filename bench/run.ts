/**
 * npm run bench: builds its own images, times vdisk against qemu-img on the
 * same files in the same run (alternating, several runs, medians), times the
 * WebAssembly kernels against their TypeScript twins and memory bandwidth,
 * prints one line per measurement and writes JSON to bench/results/.
 *
 * Environment: VDISK_BENCH_GIB (image size, default 4), VDISK_BENCH_RUNS (default 5),
 * VDISK_BENCH_DIR (scratch directory, default the system temp dir).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { isZeroTs } from '../engine/kernels/zero.ts';
import { loadWasmKernels } from '../engine/kernels/index.ts';

const GIB = Number(process.env.VDISK_BENCH_GIB ?? 4);
const RUNS = Number(process.env.VDISK_BENCH_RUNS ?? 5);
const VDISK = ['dist/cli/vdisk.mjs'];
const MiB = 2 ** 20;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results: Record<string, unknown>[] = [];

function time(cmd: string, args: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** Alternates the two commands RUNS times and prints `op  vdisk_s  qemu_s  ratio`. */
function compareCommands(op: string, vdiskArgs: string[], qemuArgs: string[], after?: () => void): void {
  const v: number[] = [];
  const q: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    v.push(time(process.execPath, [...VDISK, ...vdiskArgs]));
    after?.();
    q.push(time('qemu-img', qemuArgs));
    after?.();
  }
  const row = { op, vdisk_s: median(v), qemu_s: median(q), ratio: median(v) / median(q) };
  results.push(row);
  console.log(`${op.padEnd(34)} ${row.vdisk_s.toFixed(3).padStart(8)} ${row.qemu_s.toFixed(3).padStart(8)} ${row.ratio.toFixed(2).padStart(7)}`);
}

/** Throughput of `fn` over `bytes`, best of several passes, in GB/s. */
function gbps(bytes: number, fn: () => void): number {
  let best = Infinity;
  for (let i = 0; i < 7; i++) {
    const t = process.hrtime.bigint();
    fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
  }
  return bytes / best / 1e9;
}

async function kernels(): Promise<void> {
  const k = await loadWasmKernels(readFileSync('build/wasm/kernels-simd.wasm'), readFileSync('build/wasm/kernels-scalar.wasm'));
  const size = 16 * MiB;
  const buf = k.alloc(size);
  buf.fill(0);
  const copyDst = new Uint8Array(size);
  const rows = {
    'memory copy': gbps(size, () => copyDst.set(buf)),
    [`zero detect (${k.name})`]: gbps(size, () => k.isZero(buf)),
    'zero detect (typescript)': gbps(size, () => isZeroTs(buf)),
  };
  for (const [op, v] of Object.entries(rows)) {
    results.push({ op, gb_per_s: v });
    console.log(`${op.padEnd(34)} ${v.toFixed(2).padStart(8)} GB/s`);
  }
}

/** A raw image of GIB GiB: per GiB, 256 MiB random, 256 MiB text, 256 MiB written zeros, 256 MiB hole. */
function makeImages(dir: string): { raw: string; qcow2: string } {
  const raw = join(dir, 'bench.raw');
  const fd = openSync(raw, 'w');
  const chunk = Buffer.alloc(4 * MiB);
  const text = Buffer.from('The quick brown fox jumps over the lazy dog; disk images compress well. '.repeat(64));
  for (let g = 0; g < GIB; g++) {
    const base = g * 1024 * MiB;
    for (let off = 0; off < 256 * MiB; off += chunk.length) writeSync(fd, randomFillSync(chunk), 0, chunk.length, base + off);
    for (let off = 0; off < chunk.length; off += text.length) text.copy(chunk, off);
    for (let off = 0; off < 256 * MiB; off += chunk.length) writeSync(fd, chunk, 0, chunk.length, base + 256 * MiB + off);
    chunk.fill(0);
    for (let off = 0; off < 256 * MiB; off += chunk.length) writeSync(fd, chunk, 0, chunk.length, base + 512 * MiB + off);
  }
  ftruncateSync(fd, GIB * 1024 * MiB);
  closeSync(fd);
  const qcow2 = join(dir, 'bench.qcow2');
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  return { raw, qcow2 };
}

async function main(): Promise<void> {
  console.log(`${'op'.padEnd(34)} ${'vdisk_s'.padStart(8)} ${'qemu_s'.padStart(8)} ${'ratio'.padStart(7)}`);
  await kernels();
  const dir = mkdtempSync(join(process.env.VDISK_BENCH_DIR ?? tmpdir(), 'vdisk-bench-'));
  try {
    const { qcow2 } = makeImages(dir);
    const out = join(dir, 'out.raw');
    const drop = () => rmSync(out, { force: true });
    compareCommands(`info qcow2 ${GIB} GiB`, ['info', '--output=json', qcow2], ['info', '--output=json', qcow2]);
    compareCommands(`map qcow2 ${GIB} GiB`, ['map', '--output=json', qcow2], ['map', '--output=json', qcow2]);
    compareCommands(`convert qcow2 -> raw ${GIB} GiB`, ['convert', '-O', 'raw', qcow2, out], ['convert', '-O', 'raw', qcow2, out], drop);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync('bench/results', { recursive: true });
  const file = join('bench/results', `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), gib: GIB, runs: RUNS, results }, null, 2) + '\n');
  console.log(`results: ${file}`);
}

await main();
