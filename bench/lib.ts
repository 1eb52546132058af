/**
 * What every benchmark section shares: timing, medians, the vdisk-versus-
 * qemu-img pairs, the result rows and how they print.
 */
import { spawnSync } from 'node:child_process';

export const MiB = 2 ** 20;
/** Image size for the command benchmarks, in GiB (VDISK_BENCH_GIB, default 4). */
export const GIB = Number(process.env.VDISK_BENCH_GIB ?? 4);
/** Runs per measurement (VDISK_BENCH_RUNS, default 5); medians are reported. */
export const RUNS = Number(process.env.VDISK_BENCH_RUNS ?? 5);
/** Seconds between a command's cleanup and the next timed run (VDISK_BENCH_SETTLE, default 3): see versusQemu. */
const SETTLE_S = Number(process.env.VDISK_BENCH_SETTLE ?? 3);
/** The CLI under test (VDISK_CLI, default the build in dist/). */
const VDISK = process.env.VDISK_CLI ?? 'dist/cli/vdisk.mjs';

export const results: Record<string, unknown>[] = [];

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Wall time of one command, in seconds; a failing command stops the benchmark. */
export function time(cmd: string, args: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0 && r.status !== 1) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return Number(process.hrtime.bigint() - t) / 1e9;
}

export interface VersusOptions {
  /** Runs after each command (e.g. removing its output). */
  after?: () => void;
  /** The ratio to stay at or under; printed and recorded next to the ratio. */
  target?: number;
}

/**
 * Runs vdisk and qemu-img once each untimed, then RUNS times each, in pairs
 * whose order alternates, and prints `op  vdisk_s  qemu_s ratio` (medians),
 * then `<= target` with `ok` or `MISSED` when there is one.
 */
export function versusQemu(op: string, vdiskArgs: string[], qemuArgs: string[], opts: VersusOptions = {}): void {
  const v: number[] = [];
  const q: number[] = [];
  // Every run starts from the same state. Nothing is waiting to be written back: gigabytes of an
  // earlier output still dirty in the page cache throttle whichever command writes next. And the
  // memory the last output held has had time to go back to the host: a virtual machine that
  // reports free memory to its host (virtio-balloon) gets it back only by faulting it in again,
  // so a command that started at once could reuse warm memory and one that started later could
  // not (the same 2 GiB write took 0.6 s or 2-3.4 s), whichever tool it was.
  const cleanUp = () => {
    opts.after?.();
    spawnSync('sync');
  };
  // Every run waits the same time: each case's first run used to follow two waits (the last
  // case's closing one and its own), met colder memory and was the case's slowest.
  const settle = () => {
    cleanUp();
    spawnSync('sleep', [String(SETTLE_S)]);
  };
  const runVdisk = () => time(process.execPath, [VDISK, ...vdiskArgs]);
  const runQemu = () => time('qemu-img', qemuArgs);
  // A case's first runs were its slowest for both tools, by up to 2×, most of all in the first
  // case after the images were built: each tool's first run is not counted.
  for (const run of [runVdisk, runQemu]) {
    settle();
    run();
  }
  // The tool that goes first alternates, so a change in the machine's state over a pair does not
  // always fall on the same one.
  for (let i = 0; i < RUNS; i++) {
    const pair = [() => v.push(runVdisk()), () => q.push(runQemu())];
    for (const run of i % 2 === 0 ? pair : pair.reverse()) {
      settle();
      run();
    }
  }
  cleanUp();
  const row = { op, vdisk_s: median(v), qemu_s: median(q), ratio: median(v) / median(q), target: opts.target, vdisk_runs: v, qemu_runs: q };
  results.push(row);
  const target = row.target === undefined ? '' : `  <= ${row.target.toFixed(2)} ${row.ratio <= row.target ? 'ok' : 'MISSED'}`;
  console.log(`${op.padEnd(40)} ${row.vdisk_s.toFixed(3).padStart(8)} ${row.qemu_s.toFixed(3).padStart(8)} ${row.ratio.toFixed(2).padStart(7)}${target}`);
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

/**
 * Throughput of `fn` over `bytes`: the median of several timed passes. A
 * warm-up first gives the JIT (and WebAssembly's tier-up) time to optimize;
 * a fast `fn` is timed in batches so each pass lasts at least a millisecond.
 */
export function rate(bytes: number, fn: () => void, passes = 7): number {
  const start = now();
  let calls = 0;
  do {
    fn();
    calls++;
  } while (calls < 3 || now() - start < 0.2);
  const batch = Math.max(1, Math.ceil(0.001 / ((now() - start) / calls)));
  const times: number[] = [];
  for (let i = 0; i < passes; i++) {
    const t = now();
    for (let b = 0; b < batch; b++) fn();
    times.push((now() - t) / batch);
  }
  return bytes / median(times);
}

/** Prints and records a throughput row. */
export function throughput(op: string, bytesPerSecond: number, unit: 'GB/s' | 'MB/s' = 'GB/s'): void {
  const value = bytesPerSecond / (unit === 'GB/s' ? 1e9 : 1e6);
  results.push({ op, [unit === 'GB/s' ? 'gb_per_s' : 'mb_per_s']: value });
  console.log(`${op.padEnd(40)} ${value.toFixed(2).padStart(8)} ${unit}`);
}
