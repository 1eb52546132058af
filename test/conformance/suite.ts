// Conformance: for every fixture in test/.fixtures/manifest.json, vdisk must
// print what qemu-img prints and convert to the same bytes.  The expected
// output is always qemu-img's, run here on the same file; nothing it prints
// is written down in this file.
//
// Allowed differences:
//  - JSON lines with "actual-size" and the human "disk size:" line (vdisk
//    reports the file length there);
//  - error messages start with "vdisk:" where qemu-img's start with
//    "qemu-img:".
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureFixtures, FIXTURES_DIR, loadManifest, type Fixture, type Operation } from '../helpers/fixtures.ts';
import { chunkHashes, describeRun, qemuImg, ROOT, vdisk, type RunResult } from '../helpers/run.ts';

// Normally done by test/global-setup.ts already; cheap when up to date.
ensureFixtures();

const TIMEOUT_MS = 60_000;
/** Outputs up to this size are compared by streaming hashes of each MiB. */
const HASH_LIMIT = 1024 * 1024 * 1024;
const CHUNK = 1024 * 1024;

type Filter = (text: string) => string;
const dropLines =
  (pattern: RegExp): Filter =>
  (text) =>
    text
      .split('\n')
      .filter((line) => !pattern.test(line))
      .join('\n');
const asIs: Filter = (text) => text;
const withoutActualSize = dropLines(/"actual-size":/);
const withoutDiskSize = dropLines(/^disk size:/);

/** Where to run from and how to name the image there. */
interface Place {
  cwd: string;
  file: string;
}
/** In the fixture's own directory, by its base name. */
function ownDir(fx: Fixture): Place {
  const path = join(FIXTURES_DIR, fx.file);
  return { cwd: dirname(path), file: basename(path) };
}
/** From the repository root, by a relative path (test/.fixtures/...). */
function fromRoot(fx: Fixture): Place {
  return { cwd: ROOT, file: relative(ROOT, join(FIXTURES_DIR, fx.file)) };
}

const skips = (fx: Fixture, op: Operation): boolean => fx.skip?.includes(op) ?? false;

function quotedNames(text: string): string[] {
  return [...text.matchAll(/'([^']+)'/g)].map((m) => m[1] ?? '');
}

/**
 * qemu-img failed: vdisk must fail the same way.  On the damaged images
 * (error fixtures) its message may differ but must name the same files; on a
 * missing backing file, and wherever qemu-img refuses a sound image (human
 * map of compressed clusters, say), the message must be qemu-img's.
 */
function expectSameFailure(fx: Fixture, place: Place, q: RunResult, v: RunResult): void {
  expect(v.status, describeRun('vdisk', v)).toBe(q.status);
  expect(v.stderr.trim(), 'vdisk must explain the failure on stderr').not.toBe('');
  // It must name the same files qemu-img names (or at least the image).
  const names = quotedNames(q.stderr);
  for (const name of names.length > 0 ? names : fx.error ? [place.file] : []) {
    expect(v.stderr, `vdisk's message should mention ${name}`).toContain(name);
  }
  if (fx.missing || !fx.error) {
    expect(v.stderr).toBe(q.stderr.replace(/^qemu-img:/gm, 'vdisk:'));
  }
  expect(v.stdout).toBe(q.stdout);
}

/** A damaged image that vdisk refuses where qemu-img reads zeros: one line naming the file, the structure and the offset, exit 1. */
function expectStricter(place: Place, v: RunResult): void {
  expect(v.status, describeRun('vdisk', v)).toBe(1);
  expect(v.stdout).toBe('');
  expect(v.stderr).toContain(place.file);
  expect(v.stderr).toMatch(/table.* at offset \d+/);
}

/** Runs the same command with both tools and compares stdout (filtered). */
function compareText(fx: Fixture, place: Place, args: (file: string) => string[], filter: Filter): void {
  const argv = args(place.file);
  if (fx.stricter) return expectStricter(place, vdisk(argv, { cwd: place.cwd }));
  const q = qemuImg(argv, { cwd: place.cwd });
  expect(q.status, `qemu-img did not finish: ${describeRun('qemu-img', q)}`).not.toBeNull();
  const v = vdisk(argv, { cwd: place.cwd });
  if (q.status !== 0) {
    expectSameFailure(fx, place, q, v);
    return;
  }
  expect(v.status, describeRun('vdisk', v)).toBe(0);
  expect(filter(v.stdout)).toBe(filter(q.stdout));
}

/** Converts with both tools to raw files in a temporary folder and compares the bytes. */
async function compareConvert(fx: Fixture, extra: string[]): Promise<void> {
  const place = ownDir(fx);
  const dir = mkdtempSync(join(tmpdir(), 'vdisk-conformance-'));
  try {
    const qOut = join(dir, 'qemu-img.raw');
    const vOut = join(dir, 'vdisk.raw');
    if (fx.stricter) {
      expectStricter(place, vdisk(['convert', ...extra, '-O', 'raw', place.file, vOut], { cwd: place.cwd }));
      expect(existsSync(vOut), 'a failed convert leaves no output').toBe(false);
      return;
    }
    const q = qemuImg(['convert', ...extra, '-O', 'raw', place.file, qOut], { cwd: place.cwd });
    expect(q.status, `qemu-img did not finish: ${describeRun('qemu-img', q)}`).not.toBeNull();
    const v = vdisk(['convert', ...extra, '-O', 'raw', place.file, vOut], { cwd: place.cwd });
    if (q.status !== 0) {
      expectSameFailure(fx, place, q, v);
      return;
    }
    expect(v.status, describeRun('vdisk', v)).toBe(0);
    expect(v.stdout).toBe(q.stdout);
    expect(existsSync(vOut), 'vdisk wrote no output file').toBe(true);
    const size = statSync(qOut).size;
    expect(statSync(vOut).size, 'output size').toBe(size);
    if (size <= HASH_LIMIT) {
      const [qh, vh] = await Promise.all([chunkHashes(qOut, CHUNK), chunkHashes(vOut, CHUNK)]);
      const first = qh.findIndex((h, i) => h !== vh[i]);
      expect(first, `outputs differ, first in the MiB at offset ${first * CHUNK}`).toBe(-1);
    } else {
      // Too big to read whole (sparse, terabytes): qemu-img compare skips holes.
      const c = qemuImg(['compare', '-f', 'raw', '-F', 'raw', qOut, vOut], { cwd: dir, timeoutMs: TIMEOUT_MS - 10_000 });
      expect(c.status, `${describeRun('qemu-img compare', c)}; stdout: ${c.stdout}`).toBe(0);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Formats whose `check` vdisk answers like qemu-img (raw: "does not support checks", exit 63). */
const CHECKED_FORMATS = ['qcow2', 'raw', 'qed', 'vdi', 'vhdx', 'parallels'];
/** qemu-img check never finishes on some damaged images (a backing loop); it gets this long. */
const CHECK_WAIT_MS = 10_000;

interface QemuInfo {
  format: string;
  'backing-filename'?: string;
  'format-specific'?: { data?: Record<string, unknown> };
}
const infos = new Map<string, QemuInfo | undefined>();
/** `qemu-img info` of the fixture, run once; undefined when qemu-img cannot open it. */
function qemuInfo(fx: Fixture): QemuInfo | undefined {
  if (!infos.has(fx.name)) {
    const place = ownDir(fx);
    const r = qemuImg(['info', '--output=json', place.file], { cwd: place.cwd });
    infos.set(fx.name, r.status === 0 ? (JSON.parse(r.stdout) as QemuInfo) : undefined);
  }
  return infos.get(fx.name);
}
const qemuFormat = (fx: Fixture) => qemuInfo(fx)?.format;

/**
 * Whether the image names other files (a backing file, a data file,
 * extents): only then do the backing-chain and repository-root variants
 * test anything beyond the plain cases. Images qemu-img cannot open are
 * always run in full.
 */
function refersToFiles(fx: Fixture): boolean {
  const info = qemuInfo(fx);
  if (!info) return true;
  const data = info['format-specific']?.data ?? {};
  return info['backing-filename'] !== undefined || 'data-file' in data || info.format === 'vmdk' || fx.missing === true;
}

const unfinishedChecks = new Set<string>();
/**
 * `check` with both tools: the same stdout, stderr and exit status, also on
 * the fixtures vdisk otherwise refuses (`stricter`): an image opened to be
 * checked is read as qemu reads it, and the check reports the damage.  Where
 * qemu-img never finishes, vdisk must fail cleanly, naming the image.
 */
function compareCheck(fx: Fixture, args: (file: string) => string[]): void {
  const place = ownDir(fx);
  const argv = args(place.file);
  const q = unfinishedChecks.has(fx.name) ? undefined : qemuImg(argv, { cwd: place.cwd, timeoutMs: CHECK_WAIT_MS });
  const v = vdisk(argv, { cwd: place.cwd });
  if (!q || q.status === null) {
    unfinishedChecks.add(fx.name);
    expect(v.status, describeRun('vdisk', v)).toBe(1);
    expect(v.stderr).toContain(place.file);
    return;
  }
  expect(v.stderr).toBe(q.stderr.replace(/^qemu-img:/gm, 'vdisk:'));
  expect(v.stdout).toBe(q.stdout);
  expect(v.status, describeRun('vdisk', v)).toBe(q.status);
}

/** Defines every conformance case for the fixtures `select` picks (one test file per format group, so they run in parallel). */
export function conformanceSuite(select: (fx: Fixture) => boolean): void {
  describe.each(loadManifest().filter(select))('$name ($file)', (fx) => {
    const note = fx.note ? ` (skipped: ${fx.note})` : '';

    it('info --output=json', () => {
      compareText(fx, ownDir(fx), (f) => ['info', '--output=json', f], withoutActualSize);
    }, TIMEOUT_MS);

    it('info --output=json --backing-chain', (ctx) => {
      if (!refersToFiles(fx)) ctx.skip();
      compareText(fx, ownDir(fx), (f) => ['info', '--output=json', '--backing-chain', f], withoutActualSize);
    }, TIMEOUT_MS);

    it('info', () => {
      compareText(fx, ownDir(fx), (f) => ['info', f], withoutDiskSize);
    }, TIMEOUT_MS);

    it('info --backing-chain', (ctx) => {
      if (!refersToFiles(fx)) ctx.skip();
      compareText(fx, ownDir(fx), (f) => ['info', '--backing-chain', f], withoutDiskSize);
    }, TIMEOUT_MS);

    it('info --output=json from the repository root', (ctx) => {
      if (!refersToFiles(fx)) ctx.skip();
      compareText(fx, fromRoot(fx), (f) => ['info', '--output=json', f], withoutActualSize);
    }, TIMEOUT_MS);

    it('info --output=json --backing-chain from the repository root', (ctx) => {
      if (!refersToFiles(fx)) ctx.skip();
      compareText(fx, fromRoot(fx), (f) => ['info', '--output=json', '--backing-chain', f], withoutActualSize);
    }, TIMEOUT_MS);

    it.skipIf(skips(fx, 'map'))(`map --output=json${skips(fx, 'map') ? note : ''}`, () => {
      compareText(fx, ownDir(fx), (f) => ['map', '--output=json', f], asIs);
    }, TIMEOUT_MS);

    it.skipIf(skips(fx, 'map'))(`map${skips(fx, 'map') ? note : ''}`, () => {
      compareText(fx, ownDir(fx), (f) => ['map', f], asIs);
    }, TIMEOUT_MS);

    const rootMapSkipped = skips(fx, 'map') || skips(fx, 'map-from-root');
    it.skipIf(rootMapSkipped)(`map from the repository root${rootMapSkipped ? note : ''}`, (ctx) => {
      if (!refersToFiles(fx)) ctx.skip();
      compareText(fx, fromRoot(fx), (f) => ['map', f], asIs);
    }, TIMEOUT_MS);

    it.skipIf(skips(fx, 'convert'))(`convert -O raw${skips(fx, 'convert') ? note : ''}`, async () => {
      await compareConvert(fx, []);
    }, TIMEOUT_MS);

    it.skipIf(skips(fx, 'check'))('check --output=json', (ctx) => {
      if (!CHECKED_FORMATS.includes(qemuFormat(fx) ?? '')) ctx.skip();
      compareCheck(fx, (f) => ['check', '--output=json', f]);
    }, TIMEOUT_MS);

    it.skipIf(skips(fx, 'check'))('check', (ctx) => {
      if (!CHECKED_FORMATS.includes(qemuFormat(fx) ?? '')) ctx.skip();
      compareCheck(fx, (f) => ['check', f]);
    }, TIMEOUT_MS);

    for (const snapshot of fx.snapshots ?? []) {
      it.skipIf(skips(fx, 'convert'))(`convert -l snapshot.name=${snapshot} -O raw`, async () => {
        await compareConvert(fx, ['-l', `snapshot.name=${snapshot}`]);
      }, TIMEOUT_MS);
    }
  });
}
