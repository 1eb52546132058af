// `check` of QED, VDI, VHDX and Parallels images against qemu-img check on the
// same files: clean images in several layouts made by qemu-img and qemu-io,
// and damaged copies made here by poking one table entry or header field, or
// by cutting or extending the file (entries past the end of the file, two
// entries sharing a cluster, leaked clusters, an image left in use, a log
// that needs replaying, tables past the end of the file). stdout, stderr
// (vdisk: for qemu-img:) and the exit status must be qemu-img's, for JSON and
// human output, and neither tool may change the file.
//
// An image opened to be checked is read as qemu reads it (what lies past the
// end of the file reads as zeros), so the check says what qemu-img's says even
// on images the other commands refuse; only a table so long that walking it
// would take time no file bounds is refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, copyFileSync, mkdtempSync, openSync, readSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '../../engine/codecs/crc32c.ts';
import { describeRun, hashFile, qemuImg, run, vdisk } from '../helpers/run.ts';

const TIMEOUT_MS = 60_000;
const KiB = 1024;
const MiB = 1024 * KiB;
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-check-formats-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function must(label: string, r: ReturnType<typeof run>): void {
  expect(r.status, describeRun(label, r)).toBe(0);
}

/** qemu-img create, then qemu-io commands; returns the name. */
function create(fmt: string, name: string, size: string, opts: string[] = [], writes: string[] = []): string {
  must('qemu-img create', qemuImg(['create', '-q', '-f', fmt, ...opts, name, size], { cwd: dir }));
  if (writes.length > 0) must('qemu-io', run('qemu-io', ['-f', fmt, ...writes.flatMap((c) => ['-c', c]), name], { cwd: dir }));
  return name;
}

const built = new Map<string, string>();
/** Builds an image once per run, however many cases start from it. */
function once(key: string, build: () => string): string {
  if (!built.has(key)) built.set(key, build());
  return built.get(key)!;
}

/** A file opened to read and poke little-endian fields. */
class Bytes {
  private readonly fd: number;
  constructor(name: string) {
    this.fd = openSync(join(dir, name), 'r+');
  }

  close(): void {
    closeSync(this.fd);
  }

  read(offset: number, length: number): Uint8Array {
    const b = new Uint8Array(length);
    readSync(this.fd, b, 0, length, offset);
    return b;
  }

  write(offset: number, bytes: Uint8Array): void {
    writeSync(this.fd, bytes, 0, bytes.length, offset);
  }

  u32(offset: number): number {
    return new DataView(this.read(offset, 4).buffer).getUint32(0, true);
  }

  u64(offset: number): bigint {
    return new DataView(this.read(offset, 8).buffer).getBigUint64(0, true);
  }

  setU32(offset: number, value: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value, true);
    this.write(offset, b);
  }

  setU64(offset: number, value: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value, true);
    this.write(offset, b);
  }
}

/** A copy of `from` named `to`, poked by `damage`. */
function damaged(from: string, to: string, damage: (b: Bytes) => void): string {
  copyFileSync(join(dir, from), join(dir, to));
  const b = new Bytes(to);
  try {
    damage(b);
  } finally {
    b.close();
  }
  return to;
}

/** A copy of `from` named `to`, cut or extended to `size(old size)` bytes. */
function resized(from: string, to: string, size: (old: number) => number): string {
  copyFileSync(join(dir, from), join(dir, to));
  truncateSync(join(dir, to), size(statSync(join(dir, to)).size));
  return to;
}

/** The file's content, or for a huge sparse file only its length and times. */
async function fingerprint(name: string): Promise<string> {
  const st = statSync(join(dir, name));
  return st.size > 256 * MiB ? `${st.size} ${st.mtimeMs} ${st.ctimeMs}` : hashFile(join(dir, name));
}

const CHECKS = (name: string) => [
  ['check', '--output=json', name],
  ['check', name],
];

/** Both tools, JSON and human: the same stdout, stderr and status (qemu's must be `status`); neither changes the file. */
async function sameCheck(name: string, status: number): Promise<void> {
  const before = await fingerprint(name);
  for (const args of CHECKS(name)) {
    const q = qemuImg(args, { cwd: dir });
    expect(q.status, describeRun('qemu-img', q)).toBe(status);
    const v = vdisk(args, { cwd: dir });
    expect(v.stderr, args.join(' ')).toBe(q.stderr.replace(/^qemu-img:/gm, 'vdisk:'));
    expect(v.stdout, args.join(' ')).toBe(q.stdout);
    expect(v.status, describeRun('vdisk', v)).toBe(q.status);
  }
  expect(await fingerprint(name), 'a check changed the file').toBe(before);
}

type Case = [label: string, build: () => string, qemuStatus: number];

// ---------------------------------------------------------------------------
// QED (qed_spec.rst "Header", "Tables"): header fields at 4 cluster_size,
// 8 table_size, 16 features, 40 l1_table_offset; tables of u64 offsets, 1 a
// zero cluster.

/** 4 KiB clusters, two-cluster tables (4 MiB per L2 table), 8 MiB: data in both L2 tables and a zero cluster. */
const qedBase = () =>
  once('qed', () =>
    create('qed', 'base.qed', '8M', ['-o', 'cluster_size=4k,table_size=2'], [
      'write -P 0x11 0 8k',
      'write -P 0x12 1M 4k',
      'write -z 2M 4k',
      'write -P 0x13 5M 12k',
    ]),
  );

/** Where things are in a QED file: the L1 table, and entry `k` of L1 entry `i`'s L2 table. */
function qedPlaces(b: Bytes): { cs: number; l1: number; l2: (i: number) => number; entry: (i: number, k: number) => number } {
  const cs = b.u32(4);
  const l1 = Number(b.u64(40));
  const l2 = (i: number) => Number(b.u64(l1 + 8 * i));
  return { cs, l1, l2, entry: (i, k) => l2(i) + 8 * k };
}

function qedDamaged(to: string, damage: (b: Bytes, p: ReturnType<typeof qedPlaces>) => void): () => string {
  return () => damaged(qedBase(), to, (b) => damage(b, qedPlaces(b)));
}

describe('qed check', () => {
  const clean: Case[] = [
    ['4 KiB clusters, two-cluster tables, data in two L2 tables and a zero cluster', qedBase, 0],
    ['the default 64 KiB clusters, scattered writes', () => create('qed', 'default.qed', '64M', [], ['write -P 1 0 100k', 'write -P 2 7M 4k', 'write -P 3 20M 1M', 'write -z 40M 64k', 'write -P 4 63M 64k']), 0],
    ['16 KiB clusters, sixteen-cluster tables', () => create('qed', 't16.qed', '32M', ['-o', 'cluster_size=16k,table_size=16'], ['write -P 5 0 1M', 'write -P 6 30M 16k']), 0],
    ['1 MiB clusters', () => create('qed', 'c1m.qed', '16M', ['-o', 'cluster_size=1M,table_size=2'], ['write -P 7 3M 2M', 'write -P 8 0 4k']), 0],
    ['a 1 TiB disk with three clusters written', () => create('qed', 'huge.qed', '1T', [], ['write -P 9 0 4k', 'write -P 9 512G 4k', 'write -P 9 1099511623680 4k']), 0],
    ['an empty image', () => create('qed', 'empty.qed', '1G'), 0],
    ['an overlay on a raw backing file', () => {
      create('raw', 'base.raw', '4M', [], ['write -P 0x21 0 4M']);
      return create('qed', 'over.qed', '4M', ['-b', 'base.raw', '-F', 'raw'], ['write -P 0x22 1M 64k']);
    }, 0],
  ];

  const damage: Case[] = [
    ['a data cluster named twice', qedDamaged('dup.qed', (b, p) => b.setU64(p.entry(0, 1), b.u64(p.entry(0, 0)))), 2],
    ['a data cluster past the end of the file', qedDamaged('data-past-eof.qed', (b, p) => b.setU64(p.entry(0, 256), 0x1000_0000n)), 2],
    ['an unaligned data cluster offset', qedDamaged('unaligned.qed', (b, p) => b.setU64(p.entry(0, 256), b.u64(p.entry(0, 256)) + 1n)), 2],
    ['an entry of 2 (neither zero cluster nor offset)', qedDamaged('two.qed', (b, p) => b.setU64(p.entry(0, 256), 2n)), 2],
    ['an offset past 2^63', qedDamaged('huge-offset.qed', (b, p) => b.setU64(p.entry(1, 257), 0xffff_ffff_ffff_f000n)), 2],
    ['a data cluster made a zero cluster (its cluster leaks)', qedDamaged('leak.qed', (b, p) => b.setU64(p.entry(0, 256), 1n)), 3],
    ['a data cluster inside the L1 table', qedDamaged('data-in-l1.qed', (b, p) => b.setU64(p.entry(0, 256), BigInt(p.l1))), 2],
    // qemu walks L2 tables in order: the first table's data cluster claims the second table, which is then skipped.
    ['a data cluster over a later L2 table', qedDamaged('data-on-l2.qed', (b, p) => b.setU64(p.entry(0, 256), BigInt(p.l2(1)))), 2],
    ['a data cluster over an earlier L2 table', qedDamaged('data-on-earlier-l2.qed', (b, p) => b.setU64(p.entry(1, 256), BigInt(p.l2(0)))), 2],
    ['an L2 table past the end of the file', qedDamaged('l2-past-eof.qed', (b, p) => b.setU64(p.l1, 0x1000_0000n)), 2],
    ['an L2 table named twice', qedDamaged('l2-twice.qed', (b, p) => b.setU64(p.l1 + 8, BigInt(p.l2(0)))), 2],
    ['an L2 table lying over the L1 table', qedDamaged('l2-on-l1.qed', (b, p) => b.setU64(p.l1 + 8, BigInt(p.l1 + p.cs))), 2],
    ['the need-check flag set', qedDamaged('need-check.qed', (b) => b.setU32(16, b.u32(16) | 2)), 0],
    ['a cluster appended (leaked)', () => resized(qedBase(), 'appended.qed', (n) => n + 4 * KiB), 3],
    ['three clusters and a bit appended', () => resized(qedBase(), 'appended-more.qed', (n) => n + 12 * KiB + 100), 3],
    ['100 bytes appended', () => resized(qedBase(), 'appended-100.qed', (n) => n + 100), 0],
    ['the last cluster cut off', () => resized(qedBase(), 'cut.qed', (n) => n - 4 * KiB), 2],
    ['600 bytes cut off', () => resized(qedBase(), 'cut-600.qed', (n) => n - 600), 2],
    // qemu counts the file in whole sectors: the cut cluster still lies in it.
    ['100 bytes cut off', () => resized(qedBase(), 'cut-100.qed', (n) => n - 100), 0],
  ];

  it.each([...clean, ...damage])('%s', async (_label, build, status) => {
    await sameCheck(build(), status);
  }, TIMEOUT_MS);

  it('one-cluster tables: qemu-img cannot open the image it made; vdisk checks it as the spec has it', () => {
    const name = create('qed', 't1.qed', '8M', ['-o', 'cluster_size=4k,table_size=1']);
    // qemu-io cannot open it either: the tables are written here, like qemu would lay them out.
    const b = new Bytes(name);
    try {
      const p = qedPlaces(b);
      const l2 = 2 * p.cs;
      b.setU64(p.l1, BigInt(l2));
      b.setU64(l2, BigInt(3 * p.cs));
      b.setU64(l2 + 8, BigInt(4 * p.cs));
      b.write(5 * p.cs - 1, Uint8Array.of(0x33));
    } finally {
      b.close();
    }
    expect(qemuImg(['check', name], { cwd: dir }).stderr).toContain('QED table offset is invalid');
    const v = vdisk(['check', '--output=json', name], { cwd: dir });
    expect(v.status, describeRun('vdisk', v)).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ 'check-errors': 0, 'allocated-clusters': 2, 'total-clusters': 2048 });
    expect(JSON.parse(v.stdout)).not.toHaveProperty('leaks');
  }, TIMEOUT_MS);
});

// ---------------------------------------------------------------------------
// VDI (VirtualBox's VDIHEADER1PLUS): block map offset at 0x154, blocks in
// image at 0x180, blocks allocated at 0x184; the map holds u32 data block
// numbers, 0xffffffff free, 0xfffffffe zero.

const VDI_BMAP = 0x154;
const VDI_ALLOCATED = 0x184;
const VDI_FREE = 0xffff_ffff;
const VDI_ZERO = 0xffff_fffe;

/** 8 MiB, blocks 0, 3 and 5 allocated (data blocks 0, 1, 2). */
const vdiBase = () => once('vdi', () => create('vdi', 'base.vdi', '8M', [], ['write -P 1 0 64k', 'write -P 2 3M 4k', 'write -P 3 5M 1M']));

function vdiDamaged(to: string, damage: (b: Bytes, entry: (i: number) => number) => void): () => string {
  return () => damaged(vdiBase(), to, (b) => damage(b, (i) => b.u32(VDI_BMAP) + 4 * i));
}

describe('vdi check', () => {
  const cases: Case[] = [
    ['a dynamic image', vdiBase, 0],
    ['a static image', () => create('vdi', 'static.vdi', '6M', ['-o', 'static=on'], ['write -P 4 1M 1M']), 0],
    ['an empty image', () => create('vdi', 'empty.vdi', '1G'), 0],
    ['every block written', () => create('vdi', 'full.vdi', '4M', [], ['write -P 5 0 4M']), 0],
    ['a data block named twice', vdiDamaged('dup.vdi', (b, e) => b.setU32(e(1), 0)), 2],
    ['a data block named three times', vdiDamaged('dup3.vdi', (b, e) => (b.setU32(e(1), 0), b.setU32(e(2), 0))), 2],
    ['two data blocks named twice', vdiDamaged('dup2x2.vdi', (b, e) => (b.setU32(e(1), 1), b.setU32(e(7), 2))), 2],
    ['a data block number just past the map', vdiDamaged('too-large.vdi', (b, e) => b.setU32(e(1), 8)), 2],
    ['a data block number of 0xfffffffd', vdiDamaged('too-large-max.vdi', (b, e) => b.setU32(e(1), 0xffff_fffd)), 2],
    ['an allocated block moved past the map', vdiDamaged('moved.vdi', (b, e) => b.setU32(e(3), 100)), 2],
    ['a free block marked zero', vdiDamaged('zero.vdi', (b, e) => b.setU32(e(1), VDI_ZERO)), 0],
    ['an allocated block freed (the count no longer matches)', vdiDamaged('freed.vdi', (b, e) => b.setU32(e(3), VDI_FREE)), 2],
    ['the header counting too many blocks', vdiDamaged('count.vdi', (b) => b.setU32(VDI_ALLOCATED, 5)), 2],
    ['the file extended', () => resized(vdiBase(), 'extended.vdi', (n) => n + 5 * MiB), 0],
    // qemu never asks whether the blocks lie in the file.
    ['the file cut short', () => resized(vdiBase(), 'cut.vdi', () => 1_000_000), 0],
    // Past the end of the file the map reads as zeros: every block names data block 0.
    ['the block map past the end of the file', vdiDamaged('bmap-past-eof.vdi', (b) => b.setU32(VDI_BMAP, 0x1000_0000)), 2],
    ['the block map moved onto a data block', vdiDamaged('bmap-on-data.vdi', (b) => b.setU32(VDI_BMAP, 3 * MiB + 512)), 2],
    ['a block map running past the end of the file', () => {
      const name = create('vdi', 'bmap-across-eof.vdi', '1G', [], ['write -P 1 0 4k', 'write -P 2 1M 4k']);
      const size = statSync(join(dir, name)).size;
      return damaged(name, 'bmap-across-eof-moved.vdi', (b) => b.setU32(VDI_BMAP, size - 2048));
    }, 2],
  ];

  it.each(cases)('%s', async (_label, build, status) => {
    await sameCheck(build(), status);
  }, TIMEOUT_MS);

  it('a block map far longer than the file is refused with a typed error (qemu-img takes minutes and 2 GiB)', () => {
    const name = damaged(vdiBase(), 'bmap-huge.vdi', (b) => b.setU32(0x180, 0x1fff_ff00));
    const v = vdisk(['check', name], { cwd: dir });
    expect(v.status, describeRun('vdisk', v)).toBe(1);
    expect(v.stdout).toBe('');
    expect(v.stderr).toMatch(/bmap-huge\.vdi.*VDI block table at offset 512: .*runs past the end of the file/);
  }, TIMEOUT_MS);
});

// ---------------------------------------------------------------------------
// Parallels (parallels.txt "Header", "BAT"): 28 cluster size in sectors,
// 32 BAT entries, 44 in_use; the BAT's u32 entries at 64, counting clusters
// ("WithouFreSpacExt") or sectors ("WithoutFreeSpace").

const PRL_IN_USE = 0x746f6e59;
const PRL_BAT = 64;

/** 4 MiB of 64 KiB clusters: clusters 0, 3, 16, 32 and 33 written, 0 and 32/33 in a row in the file. */
const prlBase = () =>
  once('prl', () => create('parallels', 'base.prl', '4M', ['-o', 'cluster_size=64k'], ['write -P 1 0 64k', 'write -P 2 1M 4k', 'write -P 3 2M 128k', 'write -P 4 192k 4k']));

function prlDamaged(to: string, damage: (b: Bytes) => void): () => string {
  return () => damaged(prlBase(), to, damage);
}

/** The original format: 63-sector clusters, BAT entries in sectors (rewritten from a qemu image as the fixtures are). */
const prlOld = () =>
  once('prl-old', () => {
    const name = create('parallels', 'old.prl', '3M', ['-o', `cluster_size=${63 * 512}`], ['write -P 1 0 40k', 'write -P 2 1M 8k', 'write -P 3 2404352 8k']);
    const b = new Bytes(name);
    try {
      b.write(0, new TextEncoder().encode('WithoutFreeSpace'));
      for (let i = 0; i < b.u32(32); i++) {
        const e = b.u32(PRL_BAT + 4 * i);
        if (e !== 0) b.setU32(PRL_BAT + 4 * i, e * 63);
      }
    } finally {
      b.close();
    }
    return name;
  });

describe('parallels check', () => {
  const cases: Case[] = [
    ['64 KiB clusters', prlBase, 0],
    ['the default 1 MiB clusters', () => create('parallels', 'default.prl', '16M', [], ['write -P 1 0 4k', 'write -P 2 5M 2M', 'write -P 3 1M 4k']), 0],
    ['an empty image of one cluster', () => create('parallels', 'empty.prl', '64M'), 0],
    // qemu counts the end of an empty image from cluster 0: a BAT longer than a cluster is "leaked".
    ['an empty image whose BAT fills two clusters', () => create('parallels', 'empty-big-bat.prl', '1G', ['-o', 'cluster_size=64k']), 3],
    ['the original format, 63-sector clusters', prlOld, 0],
    ['left in use (not closed cleanly)', prlDamaged('in-use.prl', (b) => b.setU32(44, PRL_IN_USE)), 2],
    ['an in_use field that is not the magic', prlDamaged('in-use-1.prl', (b) => b.setU32(44, 1)), 0],
    ['a cluster starting past the end of the file', prlDamaged('past-eof.prl', (b) => b.setU32(PRL_BAT + 4, 7)), 2],
    ['a BAT entry of 0xffffffff', prlDamaged('max-entry.prl', (b) => b.setU32(PRL_BAT, 0xffff_ffff)), 2],
    // qemu 7.2 does not look for clusters used twice.
    ['a cluster named twice', prlDamaged('twice.prl', (b) => b.setU32(PRL_BAT + 4, 1)), 0],
    ['clusters out of order (fragmented)', prlDamaged('fragmented.prl', (b) => b.setU32(PRL_BAT + 8, 2)), 0],
    ['100 bytes appended (a whole sector leaked)', () => resized(prlBase(), 'appended-100.prl', (n) => n + 100), 3],
    ['clusters appended', () => resized(prlBase(), 'appended.prl', (n) => n + 200_000), 3],
    ['the last cluster cut off', () => resized(prlBase(), 'cut.prl', () => 300_000), 2],
    ['left in use and cut short', () => resized(damaged(prlBase(), 'in-use-whole.prl', (b) => b.setU32(44, PRL_IN_USE)), 'in-use-cut.prl', () => 300_000), 2],
    ['the original format with a cluster past the end', () => damaged(prlOld(), 'old-past-eof.prl', (b) => b.setU32(PRL_BAT + 4, 10_000)), 2],
    ['the original format with space leaked', () => resized(prlOld(), 'old-appended.prl', (n) => n + 100_000), 3],
    // qemu flags only clusters that start past the end of the file.
    ['a cluster starting at the end of the file', prlDamaged('at-eof.prl', (b) => b.setU32(PRL_BAT + 4, 6)), 0],
    // qemu counts the file in whole sectors: the cut cluster still lies in it.
    ['100 bytes cut off', () => resized(prlBase(), 'cut-100.prl', (n) => n - 100), 0],
    // Past the end of the file the BAT reads as zeros; inside it, the data clusters read as entries.
    ['a BAT running past the end of the file', prlDamaged('bat-past-eof.prl', (b) => b.setU32(32, 0x10_0000)), 2],
  ];

  it.each(cases)('%s', async (_label, build, status) => {
    await sameCheck(build(), status);
  }, TIMEOUT_MS);

  it('a BAT far longer than the file is refused with a typed error (qemu-img cannot read it)', () => {
    const name = damaged(prlBase(), 'bat-huge.prl', (b) => b.setU32(32, 0x1fff_ffff));
    const v = vdisk(['check', name], { cwd: dir });
    expect(v.status, describeRun('vdisk', v)).toBe(1);
    expect(v.stdout).toBe('');
    expect(v.stderr).toMatch(/bat-huge\.prl.*Parallels block allocation table at offset 64: .*runs past the end of the file/);
  }, TIMEOUT_MS);
});

// ---------------------------------------------------------------------------
// VHDX (MS-VHDX 2.2 headers at 64 and 128 KiB, 2.2.3 region table at 192 KiB,
// 2.5 BAT entries: state in bits 0-2, FileOffsetMB in bits 20-63).

const VHDX_BAT_GUID = '6677c22d23f600429d64115e9bfd4a08';
const FULLY_PRESENT = 6n;
const PARTIALLY_PRESENT = 7n;

const VHDX_REGION_TABLE = 192 * KiB;

/** Where the BAT's entry in the region table is. */
function vhdxBatRegion(b: Bytes): number {
  for (let i = 0; i < b.u32(VHDX_REGION_TABLE + 8); i++) {
    const at = VHDX_REGION_TABLE + 16 + 32 * i;
    if (Buffer.from(b.read(at, 16)).toString('hex') === VHDX_BAT_GUID) return at;
  }
  throw new Error('no BAT region');
}

/** The file offset of the BAT. */
const vhdxBat = (b: Bytes): number => Number(b.u64(vhdxBatRegion(b) + 16));

/** Moves the BAT to file offset `to` in the region table (its checksum redone). */
function vhdxMoveBat(b: Bytes, to: bigint): void {
  b.setU64(vhdxBatRegion(b) + 16, to);
  b.setU32(VHDX_REGION_TABLE + 4, 0);
  b.setU32(VHDX_REGION_TABLE + 4, crc32c(b.read(VHDX_REGION_TABLE, 64 * KiB)));
}

const vhdxEntry = (mib: number, state = FULLY_PRESENT) => (BigInt(mib) << 20n) | state;

/** 8 MiB of 1 MiB blocks (log at 1 MiB, BAT at 2 MiB, metadata at 3 MiB): blocks 0, 3 and 5 present. */
const vhdxBase = () => once('vhdx', () => create('vhdx', 'base.vhdx', '8M', ['-o', 'block_size=1M'], ['write -P 1 0 64k', 'write -P 2 3M 4k', 'write -P 3 5M 1M']));

function vhdxDamaged(to: string, damage: (b: Bytes, bat: number) => void, from = vhdxBase): () => string {
  return () => damaged(from(), to, (b) => damage(b, vhdxBat(b)));
}

/**
 * qemu flushes its log as it writes, but leaves the entries in the log; naming
 * the last entry's GUID in the current header again (checksum redone) makes a
 * log that needs replaying, as a crash between the two would.
 */
function vhdxLogNeedsReplay(b: Bytes): void {
  const [h1, h2] = [64 * KiB, 128 * KiB];
  const current = b.u64(h1 + 8) > b.u64(h2 + 8) ? h1 : h2;
  const logOffset = Number(b.u64(current + 72));
  expect(Buffer.from(b.read(logOffset, 4)).toString('latin1')).toBe('loge');
  b.write(current + 48, b.read(logOffset + 32, 16));
  b.setU32(current + 4, 0);
  b.setU32(current + 4, crc32c(b.read(current, 4 * KiB)));
}

describe('vhdx check', () => {
  const cases: Case[] = [
    ['a dynamic image, 1 MiB blocks', vhdxBase, 0],
    ['the default 32 MiB blocks', () => create('vhdx', 'default.vhdx', '100M', [], ['write -P 1 0 4k', 'write -P 2 70M 1M']), 0],
    ['a fixed image', () => create('vhdx', 'fixed.vhdx', '8M', ['-o', 'subformat=fixed'], ['write -P 1 1M 4k']), 0],
    ['a 4 MiB log', () => create('vhdx', 'log4m.vhdx', '8M', ['-o', 'log_size=4M,block_size=2M'], ['write -P 1 0 4k']), 0],
    ['an empty image', () => create('vhdx', 'empty.vhdx', '1G'), 0],
    ['a block in the log', vhdxDamaged('in-log.vhdx', (b, bat) => b.setU64(bat, vhdxEntry(1))), 2],
    ['a block in the BAT', vhdxDamaged('in-bat.vhdx', (b, bat) => b.setU64(bat, vhdxEntry(2))), 2],
    ['a block in the metadata', vhdxDamaged('in-metadata.vhdx', (b, bat) => b.setU64(bat + 24, vhdxEntry(3))), 2],
    // A 2 MiB block over the BAT and the metadata: qemu names the region it registered last.
    ['a block over two regions', vhdxDamaged('two-regions.vhdx', (b, bat) => b.setU64(bat, vhdxEntry(2)), () =>
      once('vhdx-2m', () => create('vhdx', 'base-2m.vhdx', '8M', ['-o', 'block_size=2M'], ['write -P 1 0 64k']))), 2],
    ['a block in free space between the metadata and the data', vhdxDamaged('free.vhdx', (b, bat) => b.setU64(bat, vhdxEntry(4))), 0],
    ['a block named twice', vhdxDamaged('twice.vhdx', (b, bat) => b.setU64(bat + 24, b.u64(bat))), 0],
    ['a block starting at the end of the file', vhdxDamaged('at-eof.vhdx', (b, bat) => b.setU64(bat + 40, vhdxEntry(11))), 2],
    ['a block 64 GiB into the file', vhdxDamaged('far.vhdx', (b, bat) => b.setU64(bat, vhdxEntry(64 * 1024))), 2],
    ['an offset past 2^63 (overflow)', vhdxDamaged('overflow.vhdx', (b, bat) => b.setU64(bat + 40, 0x7fff_ffff_fff0_0006n)), 2],
    ['the largest offset (wraps around)', vhdxDamaged('wrap.vhdx', (b, bat) => b.setU64(bat + 40, 0xffff_ffff_fff0_0006n)), 2],
    ['an unknown block state', vhdxDamaged('state-5.vhdx', (b, bat) => b.setU64(bat + 8, 5n)), 0],
    ['the last block cut short', () => resized(vhdxBase(), 'cut.vhdx', (n) => n - 600_000), 2],
    ['the file extended', () => resized(vhdxBase(), 'extended.vhdx', (n) => n + 1_000_000), 0],
    ['a log that needs replaying (qemu opens it only to write)', () => damaged(vhdxBase(), 'log.vhdx', vhdxLogNeedsReplay), 1],
    // qemu knows no region in the header section, and tests only fully present blocks.
    ['a block in the header section', vhdxDamaged('in-header.vhdx', (b, bat) => b.setU64(bat, vhdxEntry(0))), 0],
    ['a partially present block in the metadata', vhdxDamaged('partial.vhdx', (b, bat) => b.setU64(bat + 24, vhdxEntry(3, PARTIALLY_PRESENT))), 0],
    // qemu counts the file in whole sectors: the cut block still ends in it.
    ['100 bytes cut off', () => resized(vhdxBase(), 'cut-100.vhdx', (n) => n - 100), 0],
    // Past the end of the file the BAT reads as zeros: no block is present.
    ['the BAT moved past the end of the file', vhdxDamaged('bat-past-eof.vhdx', (b) => vhdxMoveBat(b, 1n << 40n)), 0],
  ];

  it.each(cases)('%s', async (_label, build, status) => {
    await sameCheck(build(), status);
  }, TIMEOUT_MS);

  it('every (chunk ratio + 1)-th present block skips qemu\'s region test', async () => {
    // 256 MiB blocks: a chunk ratio of 16. Blocks 0-15 present far into a sparse
    // file, the 17th present entry (block 16) in the metadata (not flagged),
    // the 18th (block 17) in the log (flagged).
    const name = create('vhdx', 'chunks.vhdx', '8G', ['-o', 'block_size=256M']);
    const b = new Bytes(name);
    try {
      const bat = vhdxBat(b);
      for (let k = 0; k < 16; k++) b.setU64(bat + 8 * k, vhdxEntry(1024 + 256 * k));
      b.setU64(bat + 8 * 17, vhdxEntry(3));
      b.setU64(bat + 8 * 18, vhdxEntry(1));
    } finally {
      b.close();
    }
    truncateSync(join(dir, name), (1024 + 256 * 20) * MiB);
    await sameCheck(name, 2);
  }, TIMEOUT_MS);

});
