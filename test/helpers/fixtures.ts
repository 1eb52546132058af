// The conformance fixtures: built by scripts/make-fixtures.sh (and the
// per-format parts it sources from scripts/fixtures/) into test/.fixtures, or
// into $VDISK_FIXTURES, rebuilt whenever any of those scripts changes.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ROOT } from './run.ts';

export const FIXTURE_SCRIPT = join(ROOT, 'scripts', 'make-fixtures.sh');
export const FIXTURES_DIR = process.env.VDISK_FIXTURES ? resolve(process.env.VDISK_FIXTURES) : join(ROOT, 'test', '.fixtures');
const FIXTURE_PARTS = join(ROOT, 'scripts', 'fixtures');
export const MANIFEST = join(FIXTURES_DIR, 'manifest.json');
const STAMP = join(FIXTURES_DIR, '.script-sha256');

/** `map-from-root`: the human map run from the repository root rather than the fixture's folder. */
export type Operation = 'info' | 'map' | 'map-from-root' | 'convert' | 'check';

export interface Fixture {
  name: string;
  /** Path relative to FIXTURES_DIR. */
  file: string;
  /** Internal snapshots to convert with -l snapshot.name=NAME. */
  snapshots?: string[];
  /** Operations not compared for this fixture (see note). */
  skip?: Operation[];
  /** Set on fixtures that qemu-img refuses for at least one operation. */
  error?: string;
  /** The backing file is missing: error messages must match qemu-img's. */
  missing?: boolean;
  /**
   * Damage qemu-img reads past silently (tables beyond the end of the file
   * read as zeros) and vdisk refuses on purpose, with a typed error.
   */
  stricter?: boolean;
  note?: string;
}

function scriptHash(): string {
  const hash = createHash('sha256').update(readFileSync(FIXTURE_SCRIPT));
  const parts = existsSync(FIXTURE_PARTS) ? readdirSync(FIXTURE_PARTS).filter((f) => f.endsWith('.sh')).sort() : [];
  for (const part of parts) hash.update(part).update(readFileSync(join(FIXTURE_PARTS, part)));
  return hash.digest('hex');
}

/** True when test/.fixtures is missing or was made by another version of the script. */
export function fixturesAreStale(): boolean {
  if (!existsSync(MANIFEST) || !existsSync(STAMP)) return true;
  return readFileSync(STAMP, 'utf8').trim() !== scriptHash();
}

/** Builds test/.fixtures when it is missing or stale. */
export function ensureFixtures(): void {
  if (!fixturesAreStale()) return;
  const hash = scriptHash();
  const result = spawnSync('bash', [FIXTURE_SCRIPT, FIXTURES_DIR], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 300_000,
  });
  if (result.status !== 0) {
    throw new Error(
      `scripts/make-fixtures.sh failed (${result.error?.message ?? `exit ${result.status}`}):\n` +
        `${result.stdout ?? ''}${result.stderr ?? ''}`,
    );
  }
  writeFileSync(STAMP, `${hash}\n`);
}

export function loadManifest(): Fixture[] {
  return JSON.parse(readFileSync(MANIFEST, 'utf8')) as Fixture[];
}
