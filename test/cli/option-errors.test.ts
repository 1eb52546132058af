// How convert refuses what it is asked to write, word for word as qemu-img
// 7.2 (run here on the same arguments): an unknown -o name or an unparsable
// value gets qemu-img's bare message; a value the format cannot use, found
// while the output is created, gets "OUT: error while converting FMT: ".
// Either way the exit status is 1 and vdisk leaves no file behind.
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readdirSync } from 'node:fs';
import { ok, scratchDir } from '../helpers/scratch.ts';
import { describeRun, qemuImg, vdisk } from '../helpers/run.ts';

const s = scratchDir('option-errors');

beforeAll(() => {
  ok('create src.raw', qemuImg(['create', '-q', '-f', 'raw', 'src.raw', '3M'], { cwd: s.dir }));
  ok('create src-so.vmdk', qemuImg(['create', '-q', '-f', 'vmdk', '-o', 'subformat=streamOptimized', 'src-so.vmdk', '3M'], { cwd: s.dir }));
});

const CASES: string[][] = [
  // Names the format does not have.
  ['-O', 'vpc', '-o', 'foo=1'],
  ['-O', 'vdi', '-o', 'cluster_size=64k'],
  ['-O', 'vhdx', '-o', 'compat=1.1'],
  ['-O', 'qed', '-o', 'subformat=fixed'],
  ['-O', 'raw', '-o', 'static=on'],
  ['-O', 'qcow2', '-o', 'subformat=fixed'],
  // Values that do not parse.
  ['-O', 'qcow2', '-o', 'cluster_size=abc'],
  ['-O', 'qcow2', '-o', 'lazy_refcounts=maybe'],
  ['-O', 'vpc', '-o', 'force_size=maybe'],
  ['-O', 'vdi', '-o', 'static=1'],
  ['-O', 'vmdk', '-o', 'zeroed_grain=maybe'],
  // What the format cannot do at all.
  ['-c', '-O', 'vpc'],
  ['-O', 'raw', '-B', 'src.raw', '-F', 'raw'],
  ['-O', 'vdi', '-B', 'src.raw', '-F', 'raw'],
  ['-c', '-O', 'qcow2', '-o', 'preallocation=metadata'],
  // Values found wrong while creating the output.
  ['-O', 'qcow2', '-o', 'cluster_size=1000'],
  ['-O', 'qcow2', '-o', 'compat=0.10,lazy_refcounts=on'],
  ['-O', 'vpc', '-o', 'subformat=foo'],
  ['-O', 'vhdx', '-o', 'block_size=3M'],
  ['-O', 'vhdx', '-o', 'subformat=sparse'],
  ['-O', 'qed', '-o', 'cluster_size=3000'],
  ['-O', 'vdi', '-o', 'preallocation=metadata'],
  ['-O', 'vmdk', '-o', 'subformat=monolithicflat'],
  ['-O', 'vmdk', '-o', 'adapter_type=IDE'],
  ['-O', 'vmdk', '-o', 'compat6=on,hwversion=7'],
  ['-O', 'vmdk', '-o', 'preallocation=metadata'],
  ['-c', '-O', 'vmdk', '-o', 'subformat=monolithicFlat'],
  ['-O', 'vmdk', '-B', 'src.raw', '-F', 'raw'],
  ['-O', 'vmdk', '-o', 'subformat=monolithicFlat', '-B', 'src-so.vmdk', '-F', 'vmdk'],
];

describe('convert refuses as qemu-img does', () => {
  let n = 0;
  for (const args of CASES) {
    it(args.join(' '), () => {
      // Each tool in a folder of its own beside the sources, writing the same relative name.
      const at = (tool: string) => {
        const dir = s.path(`${tool}${n}`);
        mkdirSync(dir);
        return dir;
      };
      n++;
      const withSources = args.map((a) => (a.startsWith('src') ? `../${a}` : a));
      const qDir = at('q');
      const vDir = at('v');
      const q = qemuImg(['convert', '-f', 'raw', ...withSources, '../src.raw', 'out.img'], { cwd: qDir });
      const v = vdisk(['convert', '-f', 'raw', ...withSources, '../src.raw', 'out.img'], { cwd: vDir });
      expect(q.status, describeRun('qemu-img', q)).toBe(1);
      expect(v.status, describeRun('vdisk', v)).toBe(1);
      expect(v.stderr).toBe(q.stderr.replace(/^qemu-img:/gm, 'vdisk:'));
      expect(readdirSync(vDir)).toEqual([]);
    });
  }
});
