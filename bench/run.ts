/**
 * npm run bench: each section builds what it needs (the command sections
 * share the images of bench/images.ts), times vdisk against
 * qemu-img on the same files in the same run (each once untimed, then in
 * pairs of alternating order; medians of several runs) or a kernel against
 * its TypeScript twin, prints one line per
 * measurement, and the whole run is written as JSON to bench/results/.
 *
 * Environment: VDISK_BENCH_GIB (image size, default 4), VDISK_BENCH_RUNS
 * (default 5), VDISK_BENCH_SETTLE (seconds of rest before each timed command,
 * default 3), VDISK_BENCH_DIR (scratch folder, default the system temp dir),
 * VDISK_CLI (the vdisk build to time, default dist/cli/vdisk.mjs),
 * VDISK_BENCH_ONLY (comma-separated section names, default all of them),
 * VDISK_DIST (the built web app the browser section serves, default dist/).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GIB, RUNS, results } from './lib.ts';
import { kernels } from './sections/kernels.ts';
import { commands } from './sections/commands.ts';
import { inflate } from './sections/inflate.ts';
import { compressed, convert } from './sections/convert.ts';
import { browser } from './sections/browser.ts';

const all: Record<string, (dir: string) => Promise<void>> = { kernels, inflate, commands, convert, compressed, browser };
const only = process.env.VDISK_BENCH_ONLY?.split(',');
const unknown = only?.filter((name) => !(name in all));
if (unknown?.length) throw new Error(`VDISK_BENCH_ONLY: no section ${unknown.join(', ')}; there are ${Object.keys(all).join(', ')}`);
const sections = Object.entries(all).filter(([name]) => !only || only.includes(name)).map(([, run]) => run);

console.log(`${'op'.padEnd(40)} ${'vdisk_s'.padStart(8)} ${'qemu_s'.padStart(8)} ${'ratio'.padStart(7)}  target`);
const dir = mkdtempSync(join(process.env.VDISK_BENCH_DIR ?? tmpdir(), 'vdisk-bench-'));
try {
  for (const section of sections) await section(dir);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
mkdirSync('bench/results', { recursive: true });
const file = join('bench/results', `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), gib: GIB, runs: RUNS, results }, null, 2) + '\n');
console.log(`results: ${file}`);
