// Mutation fuzzing of real images of every format (issue: hostile input).
// Each mutant is opened and run through info, map, check, compare and a read
// of the whole image in a worker thread; every operation must end within the
// time bound with a result or a typed engine error. A hang, an untyped
// exception or a crashed worker is a failure, reported with the fixture, the
// seed and the mutation so it can be made again.
//
// Besides the fixtures, images no fixture has are made here (test/fuzz/
// generated.ts: seSparse and COWD extents, a VHDX log to replay); mutating an
// extent opens the descriptor that names it. The summary gives, per format
// and per source image, how many mutants survived (every operation ended with
// an answer or a typed error).
//
// VDISK_FUZZ_MUTANTS sets the number of mutants per format (npm run fuzz uses
// many more than npm test).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { ensureFixtures, FIXTURES_DIR, loadManifest } from '../helpers/fixtures.ts';
import { ROOT } from '../helpers/run.ts';
import { probe } from '../../engine/drivers/index.ts';
import { MemorySource } from '../../engine/io/source.ts';
import { mutate } from './mutate.ts';
import { generatedCases, type GeneratedCase } from './generated.ts';
import type { Mutant, Outcome } from './worker.ts';

const PER_FORMAT = Number(process.env.VDISK_FUZZ_MUTANTS ?? 60);
const TIME_LIMIT_MS = 15_000;
const MAX_FILE = 48 * 1024 * 1024;
const WORKER_FILE = join(ROOT, 'test/.out/fuzz-worker.mjs');
const GENERATED_DIR = join(ROOT, 'test/.out/fuzz-generated');

type Source = Omit<GeneratedCase, 'format'>;

interface Case extends Source {
  format: string;
  seed: number;
}

interface Failure {
  case: Case;
  what: string;
  problem: string;
}

ensureFixtures();

/** The fixtures worth mutating, by the format the engine detects, and the generated images. */
async function casesByFormat(generated: GeneratedCase[]): Promise<Map<string, Case[]>> {
  const byFormat = new Map<string, Source[]>();
  const add = (format: string, source: Source) => byFormat.set(format, [...(byFormat.get(format) ?? []), source]);
  for (const fx of loadManifest()) {
    if (fx.missing) continue;
    const path = join(FIXTURES_DIR, fx.file);
    if (statSync(path).size > MAX_FILE) continue;
    const head = readFileSync(path).subarray(0, 4096);
    add((await probe(new MemorySource(path, head))).name, { fixture: fx.name, path, image: path, focus: [] });
  }
  for (const { format, ...source } of generated) add(format, source);
  const out = new Map<string, Case[]>();
  for (const [format, fixtures] of byFormat) {
    out.set(
      format,
      Array.from({ length: PER_FORMAT }, (_, i) => ({ format, ...fixtures[i % fixtures.length]!, seed: (i + 1) * 7919 })),
    );
  }
  return out;
}

const originals = new Map<string, Uint8Array>();
const original = (path: string) => originals.get(path) ?? originals.set(path, new Uint8Array(readFileSync(path))).get(path)!;

/** Runs cases in a pool of worker threads, replacing a worker that hangs or dies. */
async function runAll(cases: Case[], onFailure: (f: Failure) => void, counts: Record<string, number>): Promise<void> {
  let next = 0;
  const lane = async () => {
    let worker: Worker | undefined;
    while (next < cases.length) {
      const c = cases[next++]!;
      const m = mutate(original(c.path), c.seed, c.focus);
      worker ??= new Worker(WORKER_FILE, { resourceLimits: { maxOldGenerationSizeMb: 384 } });
      const w = worker;
      const result = await new Promise<Outcome | string>((resolve) => {
        const timer = setTimeout(() => resolve('hang: no answer within the time bound'), TIME_LIMIT_MS);
        const done = (r: Outcome | string) => {
          clearTimeout(timer);
          w.off('message', onMessage);
          w.off('error', onError);
          w.off('exit', onExit);
          resolve(r);
        };
        const onMessage = (o: Outcome) => done(o);
        const onError = (e: Error) => done(`worker crashed: ${e.message}`);
        const onExit = (code: number) => done(`worker exited with ${code}`);
        w.on('message', onMessage);
        w.on('error', onError);
        w.on('exit', onExit);
        w.postMessage({ id: c.seed, path: c.path, bytes: m.bytes, image: c.image } satisfies Mutant);
      });
      if (typeof result === 'string') {
        onFailure({ case: c, what: m.what, problem: result });
        await w.terminate();
        worker = undefined;
        continue;
      }
      for (const [op, how] of Object.entries(result.ops)) {
        counts[how.startsWith('typed') ? 'typed' : how === 'ok' ? 'ok' : 'untyped']!++;
        if (how.startsWith('untyped')) onFailure({ case: c, what: m.what, problem: `${op}: ${how}` });
      }
    }
    await worker?.terminate();
  };
  await Promise.all([lane(), lane()]);
}

interface Tally {
  mutants: number;
  survived: number;
  ok: number;
  typed: number;
  /** Per source image: mutants and how many survived. */
  sources: Record<string, { mutants: number; survived: number }>;
}
const summary: Record<string, Tally> = {};
let cases: Map<string, Case[]>;
let generated: GeneratedCase[];

beforeAll(async () => {
  mkdirSync(join(ROOT, 'test/.out'), { recursive: true });
  await build({
    entryPoints: [join(ROOT, 'test/fuzz/worker.ts')],
    outfile: WORKER_FILE,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
  });
  rmSync(GENERATED_DIR, { recursive: true, force: true });
  mkdirSync(GENERATED_DIR, { recursive: true });
  generated = generatedCases(GENERATED_DIR);
  cases = await casesByFormat(generated);
}, 120_000);

afterAll(() => {
  writeFileSync(join(ROOT, 'test/.out/fuzz-summary.json'), JSON.stringify(summary, null, 2) + '\n');
  for (const [format, s] of Object.entries(summary)) {
    console.log(`fuzz ${format.padEnd(10)} ${s.survived}/${s.mutants} mutants survived (${s.ok} operations answered, ${s.typed} typed errors)`);
    const gen = Object.entries(s.sources).filter(([name]) => name.startsWith('gen-'));
    for (const [name, g] of gen) console.log(`     ${''.padEnd(10)} of which ${name}: ${g.survived}/${g.mutants}`);
  }
});

describe('the generated images', () => {
  it('read without error before they are mutated', async () => {
    const worker = new Worker(WORKER_FILE);
    try {
      for (const g of generated) {
        const bytes = new Uint8Array(readFileSync(g.path));
        const outcome = await new Promise<Outcome>((resolve) => {
          worker.once('message', resolve);
          worker.postMessage({ id: 0, path: g.path, bytes, image: g.image } satisfies Mutant);
        });
        expect(outcome.ops, g.fixture).toEqual({ info: 'ok', map: 'ok', check: expect.any(String), read: 'ok', compare: 'ok' });
        // check opens the image as qemu-img does, which refuses a VHDX log it would have to replay.
        expect(outcome.ops.check, g.fixture).toMatch(/^(ok|typed:)/);
      }
    } finally {
      await worker.terminate();
    }
  });
});

const FORMATS = ['raw', 'qcow2', 'qcow', 'qed', 'vmdk', 'vpc', 'vhdx', 'vdi', 'parallels'];

describe('mutated images end with an answer or a typed error', () => {
  it.each(FORMATS)('%s', async (format) => {
    const mine = cases.get(format) ?? [];
    expect(mine.length, `no fixtures of format ${format} to mutate`).toBeGreaterThan(0);
    const failures: Failure[] = [];
    const counts = { ok: 0, typed: 0, untyped: 0 };
    await runAll(mine, (f) => failures.push(f), counts);
    const failed = new Set(failures.map((f) => f.case.seed + f.case.path));
    const sources: Tally['sources'] = {};
    for (const c of mine) {
      const t = (sources[c.fixture] ??= { mutants: 0, survived: 0 });
      t.mutants++;
      if (!failed.has(c.seed + c.path)) t.survived++;
    }
    summary[format] = { mutants: mine.length, survived: mine.length - failed.size, ok: counts.ok, typed: counts.typed, sources };
    const report = failures.map((f) => `${f.case.fixture} seed ${f.case.seed} (${f.what}): ${f.problem.split('\n').slice(0, 4).join(' | ')}`);
    expect(report).toEqual([]);
  }, 600_000);
});
