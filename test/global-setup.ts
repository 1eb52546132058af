// vitest globalSetup for the conformance tests: checks the tools, then builds
// the qemu-img fixtures into test/.fixtures when they are missing or were
// made by an older scripts/make-fixtures.sh (a stamp holds the script's hash).
// It hashes every fixture before the run and again after it: a run that
// changed any input byte fails (vitest ignores a throw in a teardown, so the
// teardown sets the exit code itself).
import { existsSync } from 'node:fs';
import { relative } from 'node:path';
import { ensureFixtures, fixturesAreStale, FIXTURES_DIR } from './helpers/fixtures.ts';
import { qemuImg, ROOT, VDISK } from './helpers/run.ts';
import { changedFiles, hashTree } from './helpers/tree-hash.ts';

export default async function setup(): Promise<() => Promise<void>> {
  if (!existsSync(VDISK)) {
    throw new Error(
      `${relative(ROOT, VDISK)} does not exist: build the CLI first (npm run build, or npm test which builds), ` +
        'then run the tests again.',
    );
  }
  const version = qemuImg(['--version']);
  if (version.status !== 0) {
    throw new Error(
      'qemu-img is needed for the conformance tests (the expected outputs come from it): ' +
        "install Debian's qemu-utils (apt-get install qemu-utils).",
    );
  }
  const firstLine = version.stdout.split('\n')[0] ?? '';
  if (!/version 7\.2\./.test(firstLine)) {
    console.warn(`conformance: the expected outputs come from ${firstLine.trim()}; vdisk follows qemu-img 7.2.`);
  }
  if (fixturesAreStale()) {
    console.log(`conformance: building fixtures in ${relative(ROOT, FIXTURES_DIR)} ...`);
    ensureFixtures();
  }
  const before = await hashTree(FIXTURES_DIR);
  return async () => {
    const changed = changedFiles(before, await hashTree(FIXTURES_DIR));
    if (changed.length === 0) return;
    console.error(`\nFAIL inputs modified: the run changed ${changed.length} fixture(s) in ${relative(ROOT, FIXTURES_DIR)}:\n  ${changed.join('\n  ')}`);
    process.exitCode = 1;
  };
}
