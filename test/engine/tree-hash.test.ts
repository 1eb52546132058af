// The input guard of the whole suite (test/global-setup.ts hashes every
// fixture before and after the run): a byte changed behind the same size and
// modification time is caught, and so is a removed file.
import { afterAll, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, openSync, rmSync, statSync, utimesSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { changedFiles, hashTree } from '../helpers/tree-hash.ts';

const dir = mkdtempSync(join(tmpdir(), 'vdisk-tree-hash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('reports a file changed in place with its size and mtime kept, and a removed one', async () => {
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'a.img'), new Uint8Array(70000).fill(7));
  writeFileSync(join(dir, 'b.img'), 'b');
  writeFileSync(join(dir, 'c.img'), 'c');
  const before = await hashTree(dir);
  expect([...before.keys()].sort()).toEqual(['b.img', 'c.img', join('sub', 'a.img')]);

  const file = join(dir, 'sub', 'a.img');
  const { atime, mtime, size } = statSync(file);
  const fd = openSync(file, 'r+');
  writeSync(fd, new Uint8Array([8]), 0, 1, 65536);
  closeSync(fd);
  utimesSync(file, atime, mtime);
  expect(statSync(file).size).toBe(size);
  expect(statSync(file).mtime.getTime()).toBe(mtime.getTime());
  rmSync(join(dir, 'c.img'));
  writeFileSync(join(dir, 'new.img'), 'outputs are not inputs');

  expect(changedFiles(before, await hashTree(dir)).sort()).toEqual(['c.img (removed)', `${join('sub', 'a.img')} (changed)`]);
});
