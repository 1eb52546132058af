// vdisk compare against qemu-img compare on pairs made here with qemu-img and
// qemu-io: same messages and exit codes (the expected ones come from running
// qemu-img on the same pair), and --all / JSON ranges checked against the
// bytes that were actually written.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeRun, qemuImg, run, vdisk } from '../helpers/run.ts';
import { Xxh32, xxh32Hex } from '../../engine/kernels/xxh32.ts';

let dir: string;
const ok = (label: string, r: ReturnType<typeof run>) => expect(r.status, describeRun(label, r)).toBe(0);
const qemuIo = (fmt: string, file: string, ...cmds: string[]) =>
  ok('qemu-io', run('qemu-io', ['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), file], { cwd: dir }));
const img = (...args: string[]) => ok(`qemu-img ${args.join(' ')}`, qemuImg(args, { cwd: dir }));

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-compare-'));
  // A qcow2 with data, zero clusters and holes, and copies of it in other shapes.
  img('create', '-q', '-f', 'qcow2', 'a.qcow2', '8M');
  qemuIo('qcow2', 'a.qcow2', 'write -P 0x41 0 1M', 'write -z 2M 1M', 'write -P 0x42 5M 64k', 'write -P 0 6M 64k');
  img('convert', '-O', 'raw', 'a.qcow2', 'a.raw');
  img('convert', '-O', 'qcow2', 'a.qcow2', 'a-copy.qcow2');
  // The same content over a backing file.
  img('create', '-q', '-f', 'qcow2', 'base.qcow2', '8M');
  qemuIo('qcow2', 'base.qcow2', 'write -P 0x41 0 1M');
  img('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'over.qcow2');
  qemuIo('qcow2', 'over.qcow2', 'write -P 0x42 5M 64k');
  // Differences at known places.
  img('convert', '-O', 'qcow2', 'a.qcow2', 'b.qcow2');
  qemuIo('qcow2', 'b.qcow2', 'write -P 0x43 1052672 8k', 'write -P 0x44 5243392 512', 'write -P 0x45 7M 4k');
  // Sizes that differ: a zero tail, then a non-zero one.
  img('create', '-q', '-f', 'qcow2', 'big-zero.qcow2', '12M');
  qemuIo('qcow2', 'big-zero.qcow2', 'write -P 0x41 0 1M', 'write -z 2M 1M', 'write -P 0x42 5M 64k', 'write -z 9M 1M');
  img('convert', '-O', 'qcow2', 'big-zero.qcow2', 'big-data.qcow2');
  qemuIo('qcow2', 'big-data.qcow2', 'write -P 0x46 10486784 100');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const pairs: [string, string[]][] = [
  ['identical images in different formats', ['a.qcow2', 'a.raw']],
  ['identical images, different layout', ['a.qcow2', 'a-copy.qcow2']],
  ['a chain against a flat image', ['over.qcow2', 'a.qcow2']],
  ['images that differ', ['a.qcow2', 'b.qcow2']],
  ['images that differ, the other way round', ['b.qcow2', 'a.raw']],
  ['sizes differ with a zero tail', ['a.qcow2', 'big-zero.qcow2']],
  ['sizes differ with data in the tail', ['big-data.qcow2', 'a.raw']],
  ['strict mode on the same layout', ['-s', 'a.qcow2', 'a-copy.qcow2']],
  ['strict mode across formats', ['-s', 'a.qcow2', 'a.raw']],
  ['strict mode with different sizes', ['-s', 'a.qcow2', 'big-zero.qcow2']],
  ['forced formats', ['-f', 'qcow2', '-F', 'raw', 'a.qcow2', 'a.raw']],
  ['a missing file', ['a.qcow2', 'nope.qcow2']],
  ['quiet', ['-q', 'a.qcow2', 'b.qcow2']],
];

describe('compare like qemu-img', () => {
  it.each(pairs)('%s', (_label, args) => {
    const q = qemuImg(['compare', ...args], { cwd: dir });
    const v = vdisk(['compare', ...args], { cwd: dir });
    expect(v.status, describeRun('vdisk', v)).toBe(q.status);
    expect(v.stdout).toBe(q.stdout);
    expect(v.stderr).toBe(q.stderr.replace(/^qemu-img:/gm, 'vdisk:'));
  });
});

describe('compare --all', () => {
  const bytes = (file: string) => {
    img('convert', '-O', 'raw', file, `${file}.flat`);
    return readFileSync(join(dir, `${file}.flat`));
  };
  const hash = (b: Uint8Array, start: number, length: number) => xxh32Hex(new Xxh32().update(b.subarray(start, start + length)).digest());

  it('lists every differing range, sector-aligned, with a hash of each side', () => {
    const v = vdisk(['compare', '--all', '--output=json', 'a.qcow2', 'b.qcow2'], { cwd: dir });
    expect(v.status, describeRun('vdisk', v)).toBe(1);
    const report = JSON.parse(v.stdout);
    const MiB = 2 ** 20;
    const a = bytes('a.qcow2');
    const b = bytes('b.qcow2');
    const expected = [
      [MiB + 4096, 8192],
      [5 * MiB + 512, 512],
      [7 * MiB, 4096],
    ].map(([start, length]) => ({ start, length, 'hash-a': hash(a, start!, length!), 'hash-b': hash(b, start!, length!) }));
    expect(report.identical).toBe(false);
    expect(report.ranges).toEqual(expected);
    expect(report.messages).toEqual([`Content mismatch at offset ${MiB + 4096}!`]);
  });

  it('finds data in the extra tail of the larger image', () => {
    const v = vdisk(['compare', '--all', '--output=json', 'big-data.qcow2', 'a.raw'], { cwd: dir });
    const report = JSON.parse(v.stdout);
    expect(report.ranges).toEqual([{ start: 10 * 2 ** 20 + 1024, length: 512, 'hash-a': expect.any(String), 'hash-b': null }]);
  });

  it('says identical images are identical', () => {
    const v = vdisk(['compare', '--all', '--output=json', 'over.qcow2', 'a.raw'], { cwd: dir });
    expect(v.status).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ identical: true, ranges: [] });
  });
});
