/**
 * A test file's scratch folder for images it builds by hand, and the
 * comparisons such tests make against qemu-img on them: the same command run
 * by both tools gives the same status, stdout (host allocation aside) and
 * stderr (with qemu-img's prefix as vdisk's).
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeRun, qemuImg, vdisk, type RunResult } from './run.ts';

export const ok = (label: string, r: RunResult) => expect(r.status, describeRun(label, r)).toBe(0);

/** Output without what depends on the host file system: actual-size, disk size. */
export const withoutActualSize = (s: string) => s.replace(/^.*"actual-size".*\n/gm, '').replace(/^disk size:.*\n/gm, '');

export interface Scratch {
  readonly dir: string;
  path(name: string): string;
  read(name: string): Uint8Array;
  write(name: string, bytes: Uint8Array): void;
  /** Runs both tools in the folder with the same arguments; requires the same status and output, returns vdisk's stdout. */
  sameAsQemu(args: string[]): string;
  /** info (JSON of the chain, human), map (JSON, human) and, unless told not to, convert -O raw agree with qemu-img. */
  allSameAsQemu(name: string, opts?: { convert?: boolean }): void;
}

/** A fresh folder for the calling test file, made before its tests and removed after them. */
export function scratchDir(prefix: string): Scratch {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), `vdisk-${prefix}-`));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const s: Scratch = {
    get dir() {
      return dir;
    },
    path: (name) => join(dir, name),
    read: (name) => new Uint8Array(readFileSync(join(dir, name))),
    write: (name, bytes) => writeFileSync(join(dir, name), bytes),
    sameAsQemu(args) {
      const q = qemuImg(args, { cwd: dir });
      const v = vdisk(args, { cwd: dir });
      expect(v.status, describeRun('vdisk ' + args.join(' '), v)).toBe(q.status);
      expect(withoutActualSize(v.stdout)).toBe(withoutActualSize(q.stdout));
      expect(v.stderr).toBe(q.stderr.replace(/^qemu-img:/gm, 'vdisk:'));
      return v.stdout;
    },
    allSameAsQemu(name, opts = {}) {
      s.sameAsQemu(['info', '--output=json', '--backing-chain', name]);
      s.sameAsQemu(['info', name]);
      s.sameAsQemu(['map', '--output=json', name]);
      s.sameAsQemu(['map', name]);
      if (opts.convert === false) return;
      ok('qemu-img convert', qemuImg(['convert', '-O', 'raw', name, name + '.q.raw'], { cwd: dir }));
      ok('vdisk convert', vdisk(['convert', '-O', 'raw', name, name + '.v.raw'], { cwd: dir }));
      expect(Buffer.compare(s.read(name + '.v.raw'), s.read(name + '.q.raw'))).toBe(0);
    },
  };
  return s;
}
