// Content hashes of every file under a folder, to prove a test run left its
// inputs byte-identical (size and mtime would miss a write that restores them).
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

function sha1(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha1');
    createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })
      .on('error', reject)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** SHA-1 of every file under `dir`, by path relative to it. */
export async function hashTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const files = filesUnder(dir);
  // A few files at a time: enough to overlap reads and hashing, not enough to thrash a shared disk.
  let next = 0;
  const lane = async () => {
    while (next < files.length) {
      const file = files[next++]!;
      out.set(relative(dir, file), await sha1(file));
    }
  };
  await Promise.all([lane(), lane(), lane()]);
  return out;
}

/** The files of `before` that are missing or differ in `after`; files added since are not inputs. */
export function changedFiles(before: Map<string, string>, after: Map<string, string>): string[] {
  return [...before].filter(([path, hash]) => after.get(path) !== hash).map(([path]) => path + (after.has(path) ? ' (changed)' : ' (removed)'));
}
