// VHD (vpc) beyond the conformance fixtures: how the virtual size is decided
// (creator application, CHS geometry, force_size), footer checksums, fixed
// disks read with -f vpc, and differencing disks, which qemu-img 7.2 cannot
// create: they are built here from the VHD specification over parents made by
// qemu-img, and checked against the content they were built with. Wherever
// qemu-img can read an image, the expected answer is qemu-img's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeRun, qemuImg, run, vdisk, type MapJsonEntry, type RunResult } from '../helpers/run.ts';
import { vpcDriver } from '../../engine/drivers/vpc/driver.ts';
import { MemorySource } from '../../engine/io/source.ts';
import { VDiskError } from '../../engine/errors.ts';
import type { Opener } from '../../engine/io/opener.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-vpc-'));
  // Log-like text, for data that is neither a pattern nor zeros.
  const lines = Array.from({ length: 4000 }, (_, i) => `2024-03-01 12:${String(i % 60).padStart(2, '0')} host sshd[${1000 + i}]: session ${i} opened\n`);
  writeFileSync(join(dir, 'text.txt'), lines.join(''));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ok = (label: string, r: RunResult) => expect(r.status, describeRun(label, r)).toBe(0);
const create = (args: string[]) => ok('qemu-img create', qemuImg(['create', '-q', ...args], { cwd: dir }));
const qemuIo = (fmt: string, file: string, cmds: string[]) =>
  ok('qemu-io', run('qemu-io', ['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), file], { cwd: dir }));
const withoutActualSize = (s: string) => s.replace(/^.*"actual-size".*\n/gm, '');
const withoutDiskSize = (s: string) => s.replace(/^disk size:.*\n/gm, '');
const read = (name: string) => new Uint8Array(readFileSync(join(dir, name)));
const write = (name: string, bytes: Uint8Array) => writeFileSync(join(dir, name), bytes);
const infoJson = (name: string, extra: string[] = []) => JSON.parse(ok2(vdisk(['info', '--output=json', ...extra, name], { cwd: dir })));

function ok2(r: RunResult): string {
  expect(r.status, describeRun('vdisk', r)).toBe(0);
  return r.stdout;
}

/** Both tools, the same arguments, the same output (minus actual-size / disk size). */
function sameAsQemu(args: string[]): string {
  const q = qemuImg(args, { cwd: dir });
  const v = vdisk(args, { cwd: dir });
  ok('qemu-img ' + args.join(' '), q);
  ok('vdisk ' + args.join(' '), v);
  expect(withoutDiskSize(withoutActualSize(v.stdout))).toBe(withoutDiskSize(withoutActualSize(q.stdout)));
  return v.stdout;
}

/** Both tools refuse the image, and vdisk's message names it. */
function bothRefuse(args: string[], file: string, detail: RegExp): void {
  const q = qemuImg(args, { cwd: dir });
  const v = vdisk(args, { cwd: dir });
  expect(q.status, describeRun('qemu-img', q)).toBe(1);
  expect(v.status, describeRun('vdisk', v)).toBe(1);
  expect(v.stderr).toContain(`'${file}'`);
  expect(v.stderr).toMatch(detail);
}

function convertBoth(args: string[], name: string): { q: Uint8Array; v: Uint8Array } {
  ok('qemu-img convert', qemuImg(['convert', ...args, '-O', 'raw', name, name + '.q.raw'], { cwd: dir }));
  ok('vdisk convert', vdisk(['convert', ...args, '-O', 'raw', name, name + '.v.raw'], { cwd: dir }));
  return { q: read(name + '.q.raw'), v: read(name + '.v.raw') };
}

// ---------------------------------------------------------------------------
// VHD structures, written from the specification

const be32 = (b: Uint8Array, at: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(at, v >>> 0);
const be64 = (b: Uint8Array, at: number, v: number) => {
  be32(b, at, Math.floor(v / 2 ** 32));
  be32(b, at + 4, v % 2 ** 32);
};
const flip = (b: Uint8Array, at: number, mask: number) => {
  b[at] = (b[at] ?? 0) ^ mask;
};
const ascii = (b: Uint8Array, at: number, s: string) => {
  for (let i = 0; i < s.length; i++) b[at + i] = s.charCodeAt(i);
};

/** The one's complement of the byte sum, the checksum field counted as zero. */
function setChecksum(b: Uint8Array, start: number, length: number, field: number): void {
  be32(b, start + field, 0);
  let sum = 0;
  for (let i = start; i < start + length; i++) sum += b[i]!;
  be32(b, start + field, ~sum);
}
const fixFooter = (b: Uint8Array, at: number) => setChecksum(b, at, 512, 64);

function utf16(s: string, littleEndian: boolean): Uint8Array {
  const out = new Uint8Array(s.length * 2);
  const v = new DataView(out.buffer);
  for (let i = 0; i < s.length; i++) v.setUint16(i * 2, s.charCodeAt(i), littleEndian);
  return out;
}

interface LocatorSpec {
  code: 'W2ru' | 'W2ku' | 'MacX';
  path: string;
}

interface DiffSpec {
  /** The parent's footer (copied for size and geometry, and for its unique id). */
  parentFooter: Uint8Array;
  parentName: string;
  locators: LocatorSpec[];
  blockSize: number;
  /** Allocated blocks, with the sectors their bitmap marks present. */
  blocks: Map<number, (sector: number) => boolean>;
}

/** The byte a differencing child holds at a guest offset (for present sectors). */
const childByte = (guest: number) => (Math.floor(guest / 512) * 29 + (guest % 512) * 7 + 0x5b) & 0xff || 1;
/** What the child holds in absent sectors of its allocated blocks: must never be read. */
const GARBAGE = 0xee;

interface Built {
  bytes: Uint8Array;
  /** Host offset of each allocated block's data in the child. */
  dataAt: Map<number, number>;
  size: number;
}

/**
 * A differencing disk: footer copy, dynamic disk header, BAT, locator data,
 * blocks (bitmap, then data) in reverse guest order, footer.
 */
function buildDifferencing(spec: DiffSpec): Built {
  const pf = spec.parentFooter;
  const pv = new DataView(pf.buffer, pf.byteOffset, 512);
  const size = pv.getUint32(48) * 2 ** 32 + pv.getUint32(52);
  const entries = Math.ceil(size / spec.blockSize);
  const batBytes = Math.ceil((entries * 4) / 512) * 512;
  const bitmapBytes = Math.ceil(spec.blockSize / 512 / 8 / 512) * 512;
  const locData = spec.locators.map((l) => (l.code === 'MacX' ? new TextEncoder().encode(l.path) : utf16(l.path, true)));
  let pos = 1536 + batBytes;
  const locAt = locData.map((d) => {
    const at = pos;
    pos += Math.ceil(d.length / 512) * 512;
    return at;
  });
  const dataAt = new Map<number, number>();
  for (const block of [...spec.blocks.keys()].sort((a, b) => b - a)) {
    dataAt.set(block, pos + bitmapBytes);
    pos += bitmapBytes + spec.blockSize;
  }
  const b = new Uint8Array(pos + 512);

  const footer = pf.slice(0, 512);
  ascii(footer, 28, 'win ');
  be64(footer, 16, 512);
  be32(footer, 60, 4);
  for (let i = 68; i < 84; i++) footer[i] = (i * 13) & 0xff;
  fixFooter(footer, 0);
  b.set(footer, 0);
  b.set(footer, pos);

  const h = 512;
  ascii(b, h, 'cxsparse');
  be64(b, h + 8, 2 ** 64 - 1);
  be64(b, h + 16, 1536);
  be32(b, h + 24, 0x00010000);
  be32(b, h + 28, entries);
  be32(b, h + 32, spec.blockSize);
  b.set(pf.subarray(68, 84), h + 40);
  b.set(utf16(spec.parentName, false).subarray(0, 512), h + 64);
  spec.locators.forEach((l, i) => {
    const e = h + 576 + i * 24;
    ascii(b, e, l.code);
    be32(b, e + 4, Math.ceil(locData[i]!.length / 512) * 512);
    be32(b, e + 8, locData[i]!.length);
    be64(b, e + 16, locAt[i]!);
    b.set(locData[i]!, locAt[i]!);
  });
  setChecksum(b, h, 1024, 36);

  b.fill(0xff, 1536, 1536 + batBytes);
  for (const [block, present] of spec.blocks) {
    const data = dataAt.get(block)!;
    be32(b, 1536 + block * 4, (data - bitmapBytes) / 512);
    for (let s = 0; s < spec.blockSize / 512; s++) {
      const guest = block * spec.blockSize + s * 512;
      if (guest >= size) break;
      if (present(s)) {
        flip(b, data - bitmapBytes + (s >> 3), 0x80 >> (s & 7));
        for (let i = 0; i < 512; i++) b[data + s * 512 + i] = childByte(guest + i);
      } else {
        b.fill(GARBAGE, data + s * 512, data + s * 512 + 512);
      }
    }
  }
  return { bytes: b, dataAt, size };
}

/** What the child reads as: the parent's bytes, overlaid by the child's present sectors. */
function expectedContent(parent: Uint8Array, spec: DiffSpec, size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set(parent.subarray(0, size));
  for (const [block, present] of spec.blocks) {
    for (let s = 0; s < spec.blockSize / 512; s++) {
      const guest = block * spec.blockSize + s * 512;
      if (guest >= size) break;
      if (present(s)) for (let i = 0; i < 512; i++) out[guest + i] = childByte(guest + i);
    }
  }
  return out;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

// ---------------------------------------------------------------------------

describe('virtual size, as qemu-img decides it', () => {
  const sizes = ['1M', '10M', '100M', '127M', '1G', '4212736', '2040G'];
  for (const size of sizes) {
    for (const force of ['off', 'on']) {
      it(`dynamic ${size}, force_size=${force}`, () => {
        const name = `size-${size}-${force}.vhd`;
        create(['-f', 'vpc', '-o', `force_size=${force}`, name, size]);
        sameAsQemu(['info', '--output=json', name]);
        sameAsQemu(['map', '--output=json', name]);
      });
    }
  }

  for (const size of ['10M', '127M']) {
    for (const force of ['off', 'on']) {
      it(`fixed ${size}, force_size=${force}, read with -f vpc`, () => {
        const name = `fixed-size-${size}-${force}.vhd`;
        create(['-f', 'vpc', '-o', `subformat=fixed,force_size=${force}`, name, size]);
        sameAsQemu(['info', '--output=json', '-f', 'vpc', name]);
      });
    }
  }

  // The footer copy at offset 0 of a 10 MiB dynamic disk (CHS 10514432 bytes), re-labelled.
  const cases: { app: string; current: number; chs?: [number, number, number] }[] = [
    { app: 'qemu', current: 10485760 },
    { app: 'win ', current: 10485760 },
    { app: 'win ', current: 10485761 },
    { app: 'qem2', current: 4194304 },
    { app: 'd2v ', current: 8388608 },
    { app: 'CTXS', current: 10485760 },
    { app: 'tap\0', current: 10485760 },
    { app: 'tap ', current: 10485760 },
    { app: 'vpc ', current: 1024 },
    { app: 'qemu', current: 10485760, chs: [65535, 16, 255] },
    { app: 'qemu', current: 10485760, chs: [65535, 16, 254] },
    { app: 'qemu', current: 0, chs: [0, 0, 0] },
    { app: 'win ', current: 0 },
  ];
  it.each(cases)('creator $app, current size $current, CHS $chs', ({ app, current, chs }) => {
    const name = `creator-${cases.findIndex((c) => c.app === app && c.current === current && c.chs === chs)}.vhd`;
    create(['-f', 'vpc', name, '10M']);
    qemuIo('vpc', name, ['write -P 0x61 0 64k', 'write -P 0x62 4M 4k']);
    const b = read(name);
    ascii(b, 28, app.padEnd(4, '\0'));
    be64(b, 48, current);
    if (chs) {
      b[56] = chs[0] >> 8;
      b[57] = chs[0] & 0xff;
      b[58] = chs[1];
      b[59] = chs[2];
    }
    fixFooter(b, 0);
    write(name, b);
    if (chs?.[2] === 254) {
      // 65535 x 16 x 254 is no longer the maximum: the CHS size exceeds the BAT.
      bothRefuse(['info', name], name, /Page table too small/);
      return;
    }
    const size = JSON.parse(sameAsQemu(['info', '--output=json', name]))['virtual-size'];
    // (qemu-img maps an empty disk as one empty entry; the generic map op prints none, for every format.)
    if (size > 0) sameAsQemu(['map', '--output=json', name]);
    const { q, v } = convertBoth([], name);
    expect(firstDifference(v, q)).toBe(-1);
  });

  it('refuses what is over 2040 GiB, as qemu-img does', () => {
    create(['-f', 'vpc', 'huge.vhd', '10M']);
    const b = read('huge.vhd');
    ascii(b, 28, 'win ');
    be64(b, 48, 0xff000000 * 512 + 512);
    fixFooter(b, 0);
    write('huge.vhd', b);
    bothRefuse(['info', 'huge.vhd'], 'huge.vhd', /File too large/);
  });
});

describe('footer checksums', () => {
  beforeAll(() => {
    create(['-f', 'vpc', 'sum.vhd', '6M']);
    qemuIo('vpc', 'sum.vhd', ['write -P 0x71 1M 64k']);
  });

  it('refuses a wrong checksum in the footer copy at offset 0, which qemu reads', () => {
    const b = read('sum.vhd');
    flip(b, 67, 1);
    write('sum-bad0.vhd', b);
    bothRefuse(['info', 'sum-bad0.vhd'], 'sum-bad0.vhd', /Incorrect header checksum/);
  });

  it('ignores the footer at the end of a dynamic disk, as qemu-img does', () => {
    const b = read('sum.vhd');
    flip(b, b.length - 512 + 67, 1);
    write('sum-badend.vhd', b);
    sameAsQemu(['info', '--output=json', 'sum-badend.vhd']);
    sameAsQemu(['map', '--output=json', 'sum-badend.vhd']);
  });

  it('ignores the dynamic disk header checksum, as qemu-img does', () => {
    const b = read('sum.vhd');
    flip(b, 512 + 39, 1);
    write('sum-badheader.vhd', b);
    sameAsQemu(['info', '--output=json', 'sum-badheader.vhd']);
  });

  it('refuses a wrong checksum in the footer of a fixed disk', () => {
    create(['-f', 'vpc', '-o', 'subformat=fixed', 'sum-fixed.vhd', '2M']);
    const b = read('sum-fixed.vhd');
    flip(b, b.length - 512 + 66, 4);
    write('sum-fixed.vhd', b);
    bothRefuse(['info', '-f', 'vpc', 'sum-fixed.vhd'], 'sum-fixed.vhd', /Incorrect header checksum/);
  });

  it('refuses a file with no VHD footer when told it is vpc', () => {
    write('noise.img', new Uint8Array(100_000).fill(0x41));
    bothRefuse(['info', '-f', 'vpc', 'noise.img'], 'noise.img', /invalid VPC image/);
    write('tiny.img', new Uint8Array(100).fill(0x41));
    bothRefuse(['info', '-f', 'vpc', 'tiny.img'], 'tiny.img', /invalid VPC image/);
  });
});

describe('fixed disks read with -f vpc', () => {
  for (const [name, opts, size] of [
    ['fx-chs.vhd', 'subformat=fixed', '3M'],
    ['fx-force.vhd', 'subformat=fixed,force_size=on', '3M'],
  ] as const) {
    it(`${opts}: info, map and convert like qemu-img`, () => {
      create(['-f', 'vpc', '-o', opts, name + '.sparse', size]);
      qemuIo('vpc', name + '.sparse', ['write -P 0x81 0 64k', 'write -s text.txt 512k 64k', 'write -z 1M 64k', 'write -P 0x82 2098176 1k']);
      // Dense on the host, as the engine cannot see holes.
      ok('densify', run('cp', ['--sparse=never', name + '.sparse', name], { cwd: dir }));
      for (const args of [['info'], ['info', '--output=json'], ['map'], ['map', '--output=json']]) sameAsQemu([...args, '-f', 'vpc', name]);
      const { q, v } = convertBoth(['-f', 'vpc'], name);
      expect(firstDifference(v, q)).toBe(-1);
      // Without -f, qemu-img and vdisk both see a raw image (no footer copy at offset 0).
      expect(JSON.parse(sameAsQemu(['info', '--output=json', name])).format).toBe('raw');
    });
  }
});

describe('differencing disks', () => {
  let parent: Uint8Array;
  let parentFooter: Uint8Array;
  const BLOCK = 512 * 1024;
  // 8390656 bytes: 16 blocks of 512 KiB and a last one of 2048 bytes (4 sectors).
  const blocks = new Map<number, (s: number) => boolean>([
    [0, (s) => s < 8 || s === 100],
    [2, () => true],
    [3, () => false],
    [5, (s) => s % 3 === 0],
    [10, (s) => s < 512],
    [11, (s) => s >= 1000],
    [16, (s) => s === 1 || s === 3],
  ]);
  const spec = (over: Partial<DiffSpec> = {}): DiffSpec => ({
    parentFooter,
    parentName: 'parent.vhd',
    locators: [
      { code: 'W2ku', path: 'C:\\vms\\parent.vhd' },
      { code: 'W2ru', path: '.\\parent.vhd' },
    ],
    blockSize: BLOCK,
    blocks,
    ...over,
  });

  beforeAll(() => {
    create(['-f', 'vpc', 'parent.vhd', '8M']);
    // Each MiB its own pattern, text in MiB 1; the parent's third 2 MiB block (MiB 4 and 5) never written.
    const cmds = [0, 1, 2, 3, 6, 7].map((m) => `write -P ${0x40 + m} ${m}M 1M`);
    qemuIo('vpc', 'parent.vhd', [...cmds, 'write -s text.txt 1M 64k', 'write -z 3M 4k', 'write -P 0x4f 8M 2048']);
    ok('parent raw', qemuImg(['convert', '-O', 'raw', 'parent.vhd', 'parent.raw'], { cwd: dir }));
    parent = read('parent.raw');
    parentFooter = read('parent.vhd').slice(0, 512);
  });

  it('reads the parent where the bitmap says absent and the child where it says present', () => {
    const built = buildDifferencing(spec());
    write('child.vhd', built.bytes);
    ok('vdisk convert', vdisk(['convert', '-O', 'raw', 'child.vhd', 'child.raw'], { cwd: dir }));
    const got = read('child.raw');
    expect(got.length).toBe(parent.length);
    expect(firstDifference(got, expectedContent(parent, spec(), built.size))).toBe(-1);
  });

  it('names the parent by its relative W2ru locator, as a vpc backing file', () => {
    write('child.vhd', buildDifferencing(spec()).bytes);
    const info = infoJson('child.vhd');
    expect(info.format).toBe('vpc');
    expect(info['virtual-size']).toBe(parent.length);
    expect(info['cluster-size']).toBe(BLOCK);
    expect(info['backing-filename']).toBe('parent.vhd');
    expect(info['full-backing-filename']).toBe('parent.vhd');
    expect(info['backing-filename-format']).toBe('vpc');
    const human = ok2(vdisk(['info', 'child.vhd'], { cwd: dir }));
    expect(human).toContain('backing file: parent.vhd\n');
    expect(human).toContain('backing file format: vpc\n');
    // The parent's entry in the chain is what qemu-img says of it.
    const chain = infoJson('child.vhd', ['--backing-chain']);
    expect(chain).toHaveLength(2);
    const q = JSON.parse(ok2(qemuImg(['info', '--output=json', 'parent.vhd'], { cwd: dir })));
    delete q['actual-size'];
    delete chain[1]['actual-size'];
    expect(chain[1]).toEqual(q);
  });

  it('maps child sectors at depth 0 and the rest as qemu-img maps the parent, at depth 1', () => {
    const built = buildDifferencing(spec());
    write('child.vhd', built.bytes);
    const map: MapJsonEntry[] = JSON.parse(ok2(vdisk(['map', '--output=json', 'child.vhd'], { cwd: dir })));
    const parentMap: MapJsonEntry[] = JSON.parse(ok2(qemuImg(['map', '--output=json', 'parent.vhd'], { cwd: dir })));
    const inChild = (guest: number) => blocks.get(Math.floor(guest / BLOCK))?.((guest % BLOCK) / 512) ?? false;
    let expectedStart = 0;
    for (const e of map) {
      expect(e.start).toBe(expectedStart);
      expectedStart += e.length;
      for (let g = e.start; g < e.start + e.length; g += 512) {
        if (e.depth === 0) {
          expect(inChild(g), `sector at ${g}`).toBe(true);
          expect(e).toMatchObject({ present: true, zero: false, data: true });
          expect(e.offset! + (g - e.start)).toBe(built.dataAt.get(Math.floor(g / BLOCK))! + (g % BLOCK));
        } else {
          expect(e.depth).toBe(1);
          expect(inChild(g), `sector at ${g}`).toBe(false);
          const p = parentMap.find((x) => x.start <= g && g < x.start + x.length)!;
          expect({ present: e.present, zero: e.zero, data: e.data }).toEqual({ present: p.present, zero: p.zero, data: p.data });
          if (p.offset !== undefined) expect(e.offset! + (g - e.start)).toBe(p.offset + (g - p.start));
        }
      }
    }
    expect(expectedStart).toBe(built.size);
    // Where neither holds data (the parent's unwritten MiB 5), the parent's zeros, at depth 1.
    const hole = 5 * 2 ** 20 + 600 * 1024;
    expect(map.find((e) => e.start <= hole && hole < e.start + e.length)).toMatchObject({ depth: 1, present: true, zero: true, data: false });
  });

  it('falls back to the W2ku locator, then to the parent name', () => {
    write('child-w2ku.vhd', buildDifferencing(spec({ locators: [{ code: 'W2ku', path: 'C:\\vms\\parent.vhd' }] })).bytes);
    expect(infoJson('child-w2ku.vhd')['backing-filename']).toBe('C:/vms/parent.vhd');
    const r = vdisk(['convert', '-O', 'raw', 'child-w2ku.vhd', 'out-w2ku.raw'], { cwd: dir });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("'C:/vms/parent.vhd'");

    const byName = spec({ locators: [] });
    write('child-name.vhd', buildDifferencing(byName).bytes);
    expect(infoJson('child-name.vhd')['backing-filename']).toBe('parent.vhd');
    ok('vdisk convert', vdisk(['convert', '-O', 'raw', 'child-name.vhd', 'out-name.raw'], { cwd: dir }));
    expect(firstDifference(read('out-name.raw'), expectedContent(parent, byName, parent.length))).toBe(-1);
  });

  it('follows a relative locator into another folder, and a MacX file URL', () => {
    mkdirSync(join(dir, 'vms/child'), { recursive: true });
    mkdirSync(join(dir, 'vms/base dir'), { recursive: true });
    copyFileSync(join(dir, 'parent.vhd'), join(dir, 'vms/base dir/parent.vhd'));
    const rel = spec({ locators: [{ code: 'W2ru', path: '..\\base dir\\parent.vhd' }] });
    write('vms/child/rel.vhd', buildDifferencing(rel).bytes);
    ok('vdisk convert', vdisk(['convert', '-O', 'raw', 'vms/child/rel.vhd', 'out-rel.raw'], { cwd: dir }));
    expect(firstDifference(read('out-rel.raw'), expectedContent(parent, rel, parent.length))).toBe(-1);
    expect(infoJson('vms/child/rel.vhd')['full-backing-filename']).toBe('vms/child/../base dir/parent.vhd');

    const url = 'file://localhost' + encodeURI(join(dir, 'vms/base dir/parent.vhd'));
    const mac = spec({ locators: [{ code: 'MacX', path: url }] });
    write('vms/child/mac.vhd', buildDifferencing(mac).bytes);
    expect(infoJson('vms/child/mac.vhd')['backing-filename']).toBe(join(dir, 'vms/base dir/parent.vhd'));
    ok('vdisk convert', vdisk(['convert', '-O', 'raw', 'vms/child/mac.vhd', 'out-mac.raw'], { cwd: dir }));
    expect(firstDifference(read('out-mac.raw'), expectedContent(parent, mac, parent.length))).toBe(-1);
  });

  it('reads a fixed parent', () => {
    create(['-f', 'vpc', '-o', 'subformat=fixed', 'fixed-parent.vhd.sparse', '8M']);
    qemuIo('vpc', 'fixed-parent.vhd.sparse', ['write -P 0x91 0 3M', 'write -P 0x92 6M 1M']);
    ok('densify', run('cp', ['--sparse=never', 'fixed-parent.vhd.sparse', 'fixed-parent.vhd'], { cwd: dir }));
    ok('parent raw', qemuImg(['convert', '-f', 'vpc', '-O', 'raw', 'fixed-parent.vhd', 'fixed-parent.raw'], { cwd: dir }));
    const fixedParent = read('fixed-parent.raw');
    const f = read('fixed-parent.vhd');
    const s = spec({ parentFooter: f.slice(f.length - 512), parentName: 'fixed-parent.vhd', locators: [{ code: 'W2ru', path: '.\\fixed-parent.vhd' }] });
    write('child-fixed.vhd', buildDifferencing(s).bytes);
    ok('vdisk convert', vdisk(['convert', '-O', 'raw', 'child-fixed.vhd', 'out-fixed.raw'], { cwd: dir }));
    expect(firstDifference(read('out-fixed.raw'), expectedContent(fixedParent, s, fixedParent.length))).toBe(-1);
    const map = JSON.parse(ok2(vdisk(['map', '--output=json', 'child-fixed.vhd'], { cwd: dir })));
    // Block 14 of the child is unallocated: the parent's bytes, in place in the fixed parent.
    const at = 7 * 2 ** 20;
    const e = map.find((x: { start: number; length: number }) => x.start <= at && at < x.start + x.length);
    expect(e).toMatchObject({ depth: 1, present: true, zero: false, data: true });
    expect(e.offset + (at - e.start)).toBe(at);
  });

  it('names a missing parent as the image gives it', () => {
    write('orphan.vhd', buildDifferencing(spec({ parentName: 'gone.vhd', locators: [{ code: 'W2ru', path: '.\\gone.vhd' }] })).bytes);
    expect(infoJson('orphan.vhd')['backing-filename']).toBe('gone.vhd');
    for (const args of [['map', 'orphan.vhd'], ['convert', '-O', 'raw', 'orphan.vhd', 'orphan.raw'], ['info', '--backing-chain', 'orphan.vhd']]) {
      const r = vdisk(args, { cwd: dir });
      expect(r.status, describeRun(args.join(' '), r)).toBe(1);
      expect(r.stderr).toContain("Could not open 'gone.vhd': No such file or directory");
    }
  });

  it('refuses locator data past the end of the file, and a disk that names no parent', () => {
    const b = buildDifferencing(spec({ locators: [{ code: 'W2ru', path: '.\\parent.vhd' }] })).bytes;
    be64(b, 512 + 576 + 16, 2 ** 40);
    write('bad-locator.vhd', b);
    const r = vdisk(['info', 'bad-locator.vhd'], { cwd: dir });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/'bad-locator\.vhd'.*VHD parent locator at offset 1088: locator data at offset 1099511627776 lies past the end/);

    write('no-parent.vhd', buildDifferencing(spec({ parentName: '', locators: [] })).bytes);
    const n = vdisk(['info', 'no-parent.vhd'], { cwd: dir });
    expect(n.status).toBe(1);
    expect(n.stderr).toMatch(/names no parent/);
  });
});

describe('beyond qemu-img', () => {
  it('honours the sector bitmap of a dynamic disk: sectors it marks absent read as zeros', () => {
    // qemu marks every sector of a block present and reads the block whole;
    // other tools mark only what was written.
    create(['-f', 'vpc', 'bitmap.vhd', '4M']);
    qemuIo('vpc', 'bitmap.vhd', ['write -P 0xa1 0 2M']);
    const b = read('bitmap.vhd');
    const v = new DataView(b.buffer);
    const bitmapAt = v.getUint32(1536) * 512;
    b.fill(0, bitmapAt + 16, bitmapAt + 512); // sectors 128 onwards (64 KiB on) absent
    write('bitmap.vhd', b);
    const map = JSON.parse(ok2(vdisk(['map', '--output=json', 'bitmap.vhd'], { cwd: dir })));
    expect(map[0]).toMatchObject({ start: 0, length: 65536, data: true, offset: bitmapAt + 512 });
    expect(map[1]).toMatchObject({ start: 65536, zero: true, data: false, present: true, depth: 0 });
    ok('vdisk convert', vdisk(['convert', '-O', 'raw', 'bitmap.vhd', 'bitmap.raw'], { cwd: dir }));
    const raw = read('bitmap.raw');
    expect(raw[65535]).toBe(0xa1);
    expect(raw.subarray(65536).every((x) => x === 0)).toBe(true);
  });

  it('refuses disk types other than fixed, dynamic and differencing (qemu-img reads them as dynamic)', () => {
    create(['-f', 'vpc', 'type5.vhd', '4M']);
    const b = read('type5.vhd');
    be32(b, 60, 5);
    fixFooter(b, 0);
    write('type5.vhd', b);
    const r = vdisk(['info', 'type5.vhd'], { cwd: dir });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/'type5\.vhd'.*VHD footer at offset 60: disk type 5/);
  });
});

describe('damaged metadata, in-process', () => {
  const opener: Opener = {
    resolve: (name) => name,
    open: async () => {
      throw new Error('no parent in this test');
    },
  };

  it('answers every mutation of the footer, header and BAT with a typed error or consistent mappings', async () => {
    create(['-f', 'vpc', 'fuzz.vhd', '6M']);
    qemuIo('vpc', 'fuzz.vhd', ['write -P 0x31 0 64k', 'write -P 0x32 4198400 8k']);
    const original = read('fuzz.vhd');
    const metadata = 1536 + 512;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ at: fc.nat(metadata - 1), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        async (pokes, fixSum) => {
          const b = original.slice();
          for (const p of pokes) b[p.at] = p.value;
          if (fixSum) fixFooter(b, 0);
          const source = new MemorySource('fuzz.vhd', b);
          let layer;
          try {
            layer = await vpcDriver.open(source, { opener });
          } catch (e) {
            expect(e).toBeInstanceOf(VDiskError);
            return;
          }
          // Mappings tile [0, size) and never point outside the file.
          let pos = 0;
          let steps = 0;
          while (pos < layer.size) {
            const m = await layer.getMapping(pos, layer.size - pos);
            expect(m.kind).not.toBe('eof');
            expect(m.offset).toBe(pos);
            expect(m.length).toBeGreaterThan(0);
            if (m.kind === 'data') expect(m.hostOffset + m.length).toBeLessThanOrEqual(b.length);
            pos += m.length;
            expect(++steps).toBeLessThan(100_000);
          }
        },
      ),
      { numRuns: 300, seed: 0x5eed },
    );
  });
});
