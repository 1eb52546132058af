// qcow2 `check` against qemu-img check on the same files: clean images of
// every kind qemu-img makes (snapshots, compressed clusters, extended L2, an
// external data file, the smallest and largest clusters, the narrowest and
// widest refcounts, bitmaps, preallocation) and damaged copies of them, made
// here by parsing a real image's header and tables and poking one field.
// stdout, stderr (vdisk: for qemu-img:) and the exit status must be qemu-img's,
// for JSON and human output, and the file must be unchanged afterwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, copyFileSync, mkdtempSync, openSync, readSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeRun, hashFile, qemuImg, run, vdisk } from '../helpers/run.ts';

const TIMEOUT_MS = 60_000;
const KiB = 1024;
const MiB = 1024 * KiB;
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-qcow2-check-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function must(label: string, r: ReturnType<typeof run>): void {
  expect(r.status, describeRun(label, r)).toBe(0);
}

function io(name: string, commands: string[]): void {
  must('qemu-io', run('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), name], { cwd: dir }));
}

/** qemu-img create, then steps in order: an array is qemu-io commands, a string takes a snapshot of that name. */
function make(name: string, size: string, opts: string[], steps: (string | string[])[] = []): string {
  must('qemu-img create', qemuImg(['create', '-q', '-f', 'qcow2', ...opts, name, size], { cwd: dir }));
  for (const step of steps) {
    if (typeof step === 'string') must('qemu-img snapshot', qemuImg(['snapshot', '-c', step, name], { cwd: dir }));
    else io(name, step);
  }
  return name;
}

/** A copy of an image under a new name, to damage. */
function copy(from: string, to: string): string {
  copyFileSync(join(dir, from), join(dir, to));
  return to;
}

/** The file's content, or for a huge sparse file only its length and times. */
async function fingerprint(name: string): Promise<string> {
  const st = statSync(join(dir, name));
  return st.size > 256 * MiB ? `${st.size} ${st.mtimeMs} ${st.ctimeMs}` : hashFile(join(dir, name));
}

/** Both tools, JSON and human (or other options): the same stdout, stderr and status; vdisk leaves the file as it was. */
async function sameCheck(name: string, options: string[][] = [['--output=json'], []]): Promise<void> {
  const before = await fingerprint(name);
  for (const args of options.map((o) => ['check', ...o, name])) {
    const q = qemuImg(args, { cwd: dir });
    expect(q.status, `qemu-img did not finish: ${describeRun('qemu-img', q)}`).not.toBeNull();
    const v = vdisk(args, { cwd: dir });
    expect(v.stderr, args.join(' ')).toBe(q.stderr.replace(/^qemu-img:/gm, 'vdisk:'));
    expect(v.stdout, args.join(' ')).toBe(q.stdout);
    expect(v.status, describeRun('vdisk', v)).toBe(q.status);
  }
  expect(await fingerprint(name), 'vdisk check changed the file').toBe(before);
}

// ---------------------------------------------------------------------------
// Reading and poking a real image (qcow2.txt "Header", "Host cluster
// management", "Cluster mapping", "Snapshots")

const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;

class Poke {
  private readonly fd: number;
  readonly clusterBits: number;
  readonly clusterSize: number;
  readonly l1Offset: number;
  readonly refcountTableOffset: number;
  readonly refcountBits: number;
  readonly nbSnapshots: number;
  readonly snapshotsOffset: number;
  readonly extL2: boolean;

  constructor(name: string) {
    this.fd = openSync(join(dir, name), 'r+');
    const h = this.bytes(0, 104);
    const v = new DataView(h.buffer);
    const version = v.getUint32(4);
    this.clusterBits = v.getUint32(20);
    this.clusterSize = 2 ** this.clusterBits;
    this.l1Offset = Number(v.getBigUint64(40));
    this.refcountTableOffset = Number(v.getBigUint64(48));
    this.nbSnapshots = v.getUint32(60);
    this.snapshotsOffset = Number(v.getBigUint64(64));
    this.refcountBits = 2 ** (version === 3 ? v.getUint32(96) : 4);
    this.extL2 = version === 3 && (v.getBigUint64(72) & 16n) !== 0n;
  }

  close(): void {
    closeSync(this.fd);
  }

  bytes(offset: number, length: number): Uint8Array {
    const b = new Uint8Array(length);
    readSync(this.fd, b, 0, length, offset);
    return b;
  }

  write(offset: number, bytes: Uint8Array): void {
    writeSync(this.fd, bytes, 0, bytes.length, offset);
  }

  u64(offset: number): bigint {
    return new DataView(this.bytes(offset, 8).buffer).getBigUint64(0);
  }

  setU64(offset: number, value: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value);
    this.write(offset, b);
  }

  setU32(offset: number, value: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value);
    this.write(offset, b);
  }

  /** The L2 table of L1 entry `index` of the L1 table at `l1Offset`. */
  l2Table(index: number, l1Offset = this.l1Offset): number {
    return Number(this.u64(l1Offset + index * 8) & OFFSET_MASK);
  }

  /** Where L2 entry `index` of the table at `l2Offset` is. */
  l2Entry(l2Offset: number, index: number): number {
    return l2Offset + index * (this.extL2 ? 16 : 8);
  }

  /** The host cluster a standard L2 entry points to. */
  dataCluster(l2Offset: number, index: number): number {
    return Number(this.u64(this.l2Entry(l2Offset, index)) & OFFSET_MASK) / this.clusterSize;
  }

  /** Byte and bit position of a cluster's refcount. */
  private refcountPlace(cluster: number): { byte: number; shift: number } {
    const perBlock = (this.clusterSize * 8) / this.refcountBits;
    const block = Number(this.u64(this.refcountTableOffset + Math.floor(cluster / perBlock) * 8) & ~0x1ffn);
    const bit = (cluster % perBlock) * this.refcountBits;
    return { byte: block + Math.floor(bit / 8), shift: bit % 8 };
  }

  refcount(cluster: number): bigint {
    const { byte, shift } = this.refcountPlace(cluster);
    if (this.refcountBits < 8) return BigInt((this.bytes(byte, 1)[0]! >> shift) & (2 ** this.refcountBits - 1));
    return this.bytes(byte, this.refcountBits / 8).reduce((n, b) => (n << 8n) | BigInt(b), 0n);
  }

  setRefcount(cluster: number, value: bigint): void {
    const { byte, shift } = this.refcountPlace(cluster);
    if (this.refcountBits < 8) {
      const mask = (2 ** this.refcountBits - 1) << shift;
      const old = this.bytes(byte, 1)[0]!;
      this.write(byte, Uint8Array.of((old & ~mask) | ((Number(value) << shift) & mask)));
      return;
    }
    const n = this.refcountBits / 8;
    this.write(byte, Uint8Array.from({ length: n }, (_, i) => Number((value >> BigInt(8 * (n - 1 - i))) & 0xffn)));
  }

  /** Snapshot table entries: where each is, and its L1 table. */
  snapshots(): { at: number; l1Offset: number; l1Size: number }[] {
    const out = [];
    let at = this.snapshotsOffset;
    for (let i = 0; i < this.nbSnapshots; i++) {
      at = Math.ceil(at / 8) * 8;
      const v = new DataView(this.bytes(at, 40).buffer);
      out.push({ at, l1Offset: Number(v.getBigUint64(0)), l1Size: v.getUint32(8) });
      at += 40 + v.getUint32(36) + v.getUint16(12) + v.getUint16(14);
    }
    return out;
  }
}

/** Opens a copy of `from` named `to`, lets `damage` poke it, and returns the name. */
function damaged(from: string, to: string, damage: (p: Poke) => void): string {
  const p = new Poke(copy(from, to));
  try {
    damage(p);
  } finally {
    p.close();
  }
  return to;
}

const COPIED = 1n << 63n;

// ---------------------------------------------------------------------------

describe('qcow2 check: clean images', () => {
  const cases: [string, () => string][] = [
    ['v3 with data, zeros and discards', () => make('plain.qcow2', '8M', [], [['write -P 0xa1 0 192k', 'write -z 1M 128k', 'write -P 0xa2 3M 64k', 'discard 3M 32k', 'write -z -u 5M 64k']])],
    ['v2 (compat 0.10)', () => make('v2.qcow2', '4M', ['-o', 'compat=0.10'], [['write -P 0xb1 0 128k', 'write -P 0xb2 2M 64k']])],
    [
      'internal snapshots (v3)',
      () => make('snaps.qcow2', '4M', [], [['write -P 1 0 128k', 'write -P 2 1M 64k'], 'one', ['write -P 3 0 64k', 'write -P 4 2M 64k', 'discard 1M 64k'], 'two', ['write -P 5 3M 4k']]),
    ],
    ['internal snapshots (v2)', () => make('snaps-v2.qcow2', '4M', ['-o', 'compat=0.10'], [['write -P 1 0 128k'], 'one', ['write -P 3 0 64k'], 'two'])],
    ['compressed clusters, zlib', () => make('zlib.qcow2', '4M', [], [['write -c -P 0xc1 0 64k', 'write -c -P 0xc2 64k 64k', 'write -P 0xc3 128k 64k', 'write -c -P 0xc4 1M 128k']])],
    ['compressed clusters, zstd', () => make('zstd.qcow2', '4M', ['-o', 'compression_type=zstd'], [['write -c -P 0xd1 0 64k', 'write -c -P 0xd2 2M 192k', 'write -P 0xd3 1M 4k']])],
    [
      'extended L2 entries',
      () => make('extl2.qcow2', '4M', ['-o', 'extended_l2=on'], [['write -P 1 0 4k', 'write -P 2 16k 8k', 'write -z 64k 4k', 'write -c -P 3 1M 64k', 'write -z -u 2M 64k', 'discard 16k 4k']]),
    ],
    ['external data file', () => make('df.qcow2', '4M', ['-o', 'data_file=df.data'], [['write -P 1 0 128k', 'write -P 2 2M 64k', 'write -z 3M 64k']])],
    ['external data file, data_file_raw', () => make('dfraw.qcow2', '4M', ['-o', 'data_file=dfraw.data,data_file_raw=on'], [['write -P 1 0 128k']])],
    ['512-byte clusters', () => make('c512.qcow2', '2M', ['-o', 'cluster_size=512'], [['write -P 1 0 64k', 'write -P 2 1M 4k', 'write -c -P 3 1536k 4k']])],
    ['2 MiB clusters', () => make('c2m.qcow2', '8M', ['-o', 'cluster_size=2M'], [['write -P 1 0 64k', 'write -c -P 2 4M 2M', 'write -z 2M 2M']])],
    ['refcount_bits=1', () => make('r1.qcow2', '4M', ['-o', 'refcount_bits=1,cluster_size=4096'], [['write -P 1 0 64k', 'write -P 2 3M 8k']])],
    ['refcount_bits=64', () => make('r64.qcow2', '4M', ['-o', 'refcount_bits=64,cluster_size=4096'], [['write -P 1 0 64k', 'write -P 2 3M 8k'], 'one', ['write -P 3 0 4k']])],
    ['lazy refcounts', () => make('lazy.qcow2', '4M', ['-o', 'lazy_refcounts=on'], [['write -P 1 0 128k']])],
    ['preallocation=metadata', () => make('prealloc.qcow2', '4M', ['-o', 'preallocation=metadata'], [['write -P 1 0 64k']])],
    ['a size of zero', () => make('empty.qcow2', '0', [])],
    ['a 64 TiB guest in a small file', () => make('huge.qcow2', '64T', [], [['write -P 1 0 64k', `write -P 2 ${2 ** 45} 64k`]])],
    [
      'persistent bitmaps',
      () => {
        make('bitmaps.qcow2', '64M', [], [['write -P 1 0 1M']]);
        must('bitmap', qemuImg(['bitmap', '--add', 'bitmaps.qcow2', 'b0'], { cwd: dir }));
        must('bitmap', qemuImg(['bitmap', '--add', '-g', '4096', 'bitmaps.qcow2', 'b1'], { cwd: dir }));
        // Written with the bitmaps enabled, so that their tables point to data clusters.
        io('bitmaps.qcow2', ['write -P 2 8M 1M']);
        return 'bitmaps.qcow2';
      },
    ],
  ];
  for (const [label, build] of cases) {
    it(label, async () => {
      await sameCheck(build());
    }, TIMEOUT_MS);
  }
});

describe('qcow2 check: damaged copies of real images', () => {
  // The images the damaged copies are made from.
  beforeAll(() => {
    make('base.qcow2', '4M', [], [['write -P 1 0 128k', 'write -P 2 1M 64k', 'write -P 3 3M 64k']]);
    make('base-snaps.qcow2', '4M', [], [['write -P 1 0 128k', 'write -P 2 1M 64k'], 'one', ['write -P 3 0 64k', 'write -P 4 2M 64k'], 'two']);
    make('base-r1.qcow2', '4M', ['-o', 'refcount_bits=1'], [['write -P 1 0 128k']]);
    make('base-r64.qcow2', '1M', ['-o', 'refcount_bits=64,cluster_size=4096'], [['write -P 1 0 8k']]);
    make('base-comp.qcow2', '4M', [], [['write -c -P 5 0 64k', 'write -c -P 6 64k 64k', 'write -P 7 128k 64k']]);
    make('base-extl2.qcow2', '4M', ['-o', 'extended_l2=on'], [['write -P 1 0 64k', 'write -P 2 1M 4k', 'write -c -P 3 2M 64k']]);
    make('base-df.qcow2', '4M', ['-o', 'data_file=base-df.data'], [['write -P 1 0 128k']]);
  });

  const cases: [string, () => string][] = [
    [
      'a refcount raised by hand (a leak)',
      () =>
        damaged('base.qcow2', 'leak.qcow2', (p) => {
          const cluster = p.dataCluster(p.l2Table(0), 0);
          p.setRefcount(cluster, p.refcount(cluster) + 1n);
        }),
    ],
    ['a refcount lowered by hand (a corruption)', () => damaged('base.qcow2', 'lowered.qcow2', (p) => p.setRefcount(p.dataCluster(p.l2Table(0), 1), 0n))],
    ['an L2 entry pointing into the header cluster', () => damaged('base.qcow2', 'into-header.qcow2', (p) => p.setU64(p.l2Entry(p.l2Table(0), 1), COPIED | 0x200n))],
    [
      'an L2 entry pointing at the refcount table',
      () => damaged('base.qcow2', 'into-reftable.qcow2', (p) => p.setU64(p.l2Entry(p.l2Table(0), 1), COPIED | BigInt(p.refcountTableOffset))),
    ],
    [
      'two L2 entries sharing one cluster',
      () =>
        damaged('base.qcow2', 'shared.qcow2', (p) => {
          const l2 = p.l2Table(0);
          p.setU64(p.l2Entry(l2, 16), p.u64(p.l2Entry(l2, 0)));
        }),
    ],
    [
      "a snapshot's L2 table with a refcount too high",
      () =>
        damaged('base-snaps.qcow2', 'snap-l2-high.qcow2', (p) => {
          const l2 = p.l2Table(0, p.snapshots()[0]!.l1Offset) / p.clusterSize;
          p.setRefcount(l2, p.refcount(l2) + 1n);
        }),
    ],
    [
      "a snapshot's L2 table with a refcount too low",
      () =>
        damaged('base-snaps.qcow2', 'snap-l2-low.qcow2', (p) => {
          // The table both the image and the second snapshot use: its refcount is 2.
          const l2 = p.l2Table(0, p.snapshots()[1]!.l1Offset) / p.clusterSize;
          p.setRefcount(l2, 1n);
        }),
    ],
    ['a refcount block past the end of the file', () => damaged('base.qcow2', 'refblock-past-eof.qcow2', (p) => p.setU64(p.refcountTableOffset, 0x1_0000_0000n))],
    ['a refcount block at an unaligned offset', () => damaged('base.qcow2', 'refblock-unaligned.qcow2', (p) => p.setU64(p.refcountTableOffset, p.u64(p.refcountTableOffset) + 0x200n))],
    ['a refcount table entry with reserved bits', () => damaged('base.qcow2', 'reftable-reserved.qcow2', (p) => p.setU64(p.refcountTableOffset, p.u64(p.refcountTableOffset) | 1n))],
    ['a refcount table entry far past the end', () => damaged('base.qcow2', 'reftable-high.qcow2', (p) => p.setU64(p.refcountTableOffset, 0xff00_0000_0000_0000n))],
    ['an L2 entry pointing at a refcount block', () => damaged('base.qcow2', 'into-refblock.qcow2', (p) => p.setU64(p.l2Entry(p.l2Table(0), 5), COPIED | (p.u64(p.refcountTableOffset) & OFFSET_MASK)))],
    ['an L2 entry past the end of the file', () => damaged('base.qcow2', 'l2-past-eof.qcow2', (p) => p.setU64(p.l2Entry(p.l2Table(0), 5), COPIED | 0x1000_0000n))],
    [
      'L1 and L2 entries with reserved bits',
      () =>
        damaged('base.qcow2', 'reserved.qcow2', (p) => {
          const l2 = p.l2Table(0);
          p.setU64(p.l2Entry(l2, 0), p.u64(p.l2Entry(l2, 0)) | 2n | (1n << 56n));
          p.setU64(p.l1Offset, p.u64(p.l1Offset) | (1n << 56n) | 1n);
        }),
    ],
    ['an unaligned L2 table offset', () => damaged('base.qcow2', 'l1-unaligned-entry.qcow2', (p) => p.setU64(p.l1Offset, p.u64(p.l1Offset) + 0x200n))],
    [
      'a preallocated zero cluster at an unaligned offset',
      () =>
        damaged('base.qcow2', 'zero-unaligned.qcow2', (p) => {
          const l2 = p.l2Table(0);
          const inData = BigInt(p.dataCluster(l2, 0) * p.clusterSize + 0x200);
          p.setU64(p.l2Entry(l2, 7), COPIED | inData | 1n);
        }),
    ],
    [
      '"copied" flags cleared',
      () =>
        damaged('base.qcow2', 'not-copied.qcow2', (p) => {
          const l2 = p.l2Table(0);
          p.setU64(p.l1Offset, p.u64(p.l1Offset) & ~COPIED);
          p.setU64(p.l2Entry(l2, 0), p.u64(p.l2Entry(l2, 0)) & ~COPIED);
        }),
    ],
    ['a compressed cluster with the "copied" flag', () => damaged('base-comp.qcow2', 'comp-copied.qcow2', (p) => p.setU64(p.l2Table(0), p.u64(p.l2Table(0)) | COPIED))],
    [
      'extended L2 entries with bad subcluster bitmaps',
      () =>
        damaged('base-extl2.qcow2', 'extl2-bitmaps.qcow2', (p) => {
          const l2 = p.l2Table(0);
          // The subcluster bitmap: zero bits in the high word, allocation bits in the low word.
          const bitmap = (zero: bigint, alloc: bigint) => (zero << 32n) | alloc;
          p.setU64(p.l2Entry(l2, 0) + 8, bitmap(1n, 1n));
          p.setU64(p.l2Entry(l2, 5) + 8, bitmap(0n, 4n));
          p.setU64(p.l2Entry(l2, 32) + 8, bitmap(0n, 2n));
        }),
    ],
    ['two references with 1-bit refcounts (overflow)', () => damaged('base-r1.qcow2', 'r1-overflow.qcow2', (p) => p.setU64(p.l2Entry(p.l2Table(0), 5), p.u64(p.l2Entry(p.l2Table(0), 0))))],
    ['a 64-bit refcount beyond 2^53', () => damaged('base-r64.qcow2', 'r64-huge.qcow2', (p) => p.setRefcount(p.dataCluster(p.l2Table(0), 0), 0xffff_ffff_ffff_fff0n))],
    [
      'a version 3 snapshot entry without its extra data',
      () =>
        damaged('base-snaps.qcow2', 'snap-incomplete.qcow2', (p) => {
          // The last entry: its id and name move over the extra data, whose size becomes 0.
          const at = p.snapshots()[1]!.at;
          const v = new DataView(p.bytes(at, 40).buffer);
          const extra = v.getUint32(36);
          p.write(at + 40, p.bytes(at + 40 + extra, v.getUint16(12) + v.getUint16(14)));
          p.setU32(at + 36, 0);
        }),
    ],
    ['a snapshot L1 table at an unaligned offset', () => damaged('base-snaps.qcow2', 'snap-l1-unaligned.qcow2', (p) => p.setU64(p.snapshots()[0]!.at, BigInt(p.snapshots()[0]!.l1Offset + 0x200)))],
    ['a snapshot L1 table too large', () => damaged('base-snaps.qcow2', 'snap-l1-large.qcow2', (p) => p.setU32(p.snapshots()[1]!.at + 8, 0x400001))],
    ['a snapshot L1 table past the end of the file', () => damaged('base-snaps.qcow2', 'snap-l1-past-eof.qcow2', (p) => p.setU64(p.snapshots()[1]!.at, 0x1_0000_0000n))],
    ['a snapshot L1 table beyond any readable offset (the check fails)', () => damaged('base-snaps.qcow2', 'snap-l1-unreadable.qcow2', (p) => p.setU64(p.snapshots()[1]!.at, 0x7fff_ffff_ffff_0000n))],
    [
      'a snapshot in an image with a data file',
      () =>
        damaged('base-df.qcow2', 'df-snapshot.qcow2', (p) => {
          // A snapshot table entry in a new cluster at the end, using the active L1 table.
          const at = Math.ceil(statSync(join(dir, 'df-snapshot.qcow2')).size / p.clusterSize) * p.clusterSize;
          const entry = new Uint8Array(p.clusterSize);
          const v = new DataView(entry.buffer);
          v.setBigUint64(0, BigInt(p.l1Offset));
          v.setUint32(8, 1);
          v.setUint16(12, 1);
          v.setUint16(14, 1);
          v.setUint32(36, 16);
          v.setBigUint64(48, BigInt(4 * MiB));
          entry.set([0x31, 0x78], 56);
          p.write(at, entry);
          p.setU32(60, 1);
          p.setU64(64, BigInt(at));
        }),
    ],
  ];
  for (const [label, build] of cases) {
    it(label, async () => {
      await sameCheck(build());
    }, TIMEOUT_MS);
  }

  it('quiet (-q): only the messages, in either output form', async () => {
    const name = damaged('base.qcow2', 'quiet.qcow2', (p) => p.setRefcount(p.dataCluster(p.l2Table(0), 1), 0n));
    await sameCheck(name, [['-q'], ['-q', '--output=json']]);
    await sameCheck(damaged('base.qcow2', 'quiet-failed.qcow2', (p) => p.setU64(p.refcountTableOffset, p.u64(p.refcountTableOffset) + 0x200n)), [['-q']]);
  }, TIMEOUT_MS);

  it('a file cut short after its header (tables past the end read as zeros, as qemu reads them)', async () => {
    const name = copy('base.qcow2', 'cut-short.qcow2');
    truncateSync(join(dir, name), 1024);
    await sameCheck(name);
  }, TIMEOUT_MS);

  it('a file of more clusters than qemu can count (sparse, 1 TiB of 512-byte clusters)', async () => {
    const name = make('too-many-clusters.qcow2', '1M', ['-o', 'cluster_size=512']);
    truncateSync(join(dir, name), 2 ** 31 * 512 + 1);
    await sameCheck(name);
  }, TIMEOUT_MS);
});

describe('qcow2 check: bounded memory and work', () => {
  it('a file too big for per-cluster counters is refused with a typed error, before any allocation', () => {
    // 64 GiB + 512 B of 512-byte clusters (sparse): 2 bytes of counter per cluster would pass 256 MiB.
    const name = make('counters.qcow2', '1M', ['-o', 'cluster_size=512']);
    truncateSync(join(dir, name), 64 * 1024 * MiB + 512);
    const r = vdisk(['check', name], { cwd: dir });
    expect(r.status, describeRun('vdisk', r)).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^vdisk: counters\.qcow2: Unsupported feature: checking a file of 134217729 clusters/);
  }, TIMEOUT_MS);

  it('an L1 table whose every entry names the same full L2 table stops with a typed error', () => {
    // 4 KiB clusters and a 2 TiB guest: an L1 table of 1M entries, each made to point at the one L2 table, full of data.
    const name = make('same-l2.qcow2', '2T', ['-o', 'cluster_size=4096'], [['write -P 1 0 2M']]);
    const p = new Poke(name);
    const l1 = new Uint8Array(8 * MiB);
    const v = new DataView(l1.buffer);
    const entry = p.u64(p.l1Offset);
    for (let i = 0; i < l1.length / 8; i++) v.setBigUint64(i * 8, entry);
    p.write(p.l1Offset, l1);
    p.close();
    const started = Date.now();
    const r = vdisk(['check', name], { cwd: dir });
    expect(r.status, describeRun('vdisk', r)).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^vdisk: same-l2\.qcow2: L2 table at offset \d+: the tables reference more than \d+ entries/);
    expect(Date.now() - started).toBeLessThan(20_000);
  }, TIMEOUT_MS);
});
