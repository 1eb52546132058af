// qcow (version 1) beyond the conformance fixtures: images of every cluster
// and L2 table size qemu opens, built here from the header layout of qemu's
// block/qcow.c (qemu-img only makes two of them) with plain and compressed
// clusters, checked against qemu-img; AES-encrypted images; damaged headers
// and tables, which must give typed errors naming structure and offset;
// random damage; and a large L1 table read a page at a time.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { qemuImg, vdisk } from '../helpers/run.ts';
import { ok, scratchDir } from '../helpers/scratch.ts';
import { SparseSource } from '../helpers/sparse-source.ts';
import { parseHeader, parseL2Entry } from '../../engine/drivers/qcow/header.ts';
import { qcowDriver } from '../../engine/drivers/qcow/driver.ts';
import { qcow2Driver } from '../../engine/drivers/qcow2/driver.ts';
import * as L from '../../engine/drivers/qcow/layout.ts';
import { MemorySource, type ByteSource } from '../../engine/io/source.ts';
import { FileSetOpener } from '../../engine/io/opener.ts';
import { openImage } from '../../engine/image.ts';
import { probe } from '../../engine/drivers/index.ts';
import { ImageReader } from '../../engine/ops/read.ts';
import { mapImage } from '../../engine/ops/map.ts';
import { ImageFormatError, UnsupportedFeatureError, VDiskError } from '../../engine/errors.ts';
import type { Layer } from '../../engine/driver.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const scratch = scratchDir('qcow');
const { read, write, sameAsQemu, allSameAsQemu } = scratch;

// ---------------------------------------------------------------------------
// qcow images written from the header layout

interface QcowSpec {
  clusterBits?: number;
  l2Bits?: number;
  size: number;
  backing?: string;
  cryptMethod?: number;
  /** Guest cluster index -> one cluster of data, stored compressed when asked and when it shrinks. */
  clusters?: Map<number, { data: Uint8Array; compressed?: boolean }>;
}

interface Built {
  bytes: Uint8Array;
  l1Offset: number;
  l2Offsets: Map<number, number>;
  /** Host offset (and stored length, when compressed) of each cluster, by guest cluster. */
  hosts: Map<number, { offset: number; length?: number }>;
}

/**
 * Header, backing name, L1 table (as qemu-img lays them out), then L2 tables
 * at 512-byte boundaries (qemu puts them on cluster boundaries; nothing asks
 * for that), then plain clusters on cluster boundaries, then compressed
 * clusters packed at any byte.
 */
function buildQcow(spec: QcowSpec): Built {
  const cb = spec.clusterBits ?? 12;
  const l2b = spec.l2Bits ?? 9;
  const cs = 2 ** cb;
  const entries = 2 ** l2b;
  const span = cs * entries;
  const l1Size = Math.ceil(spec.size / span);
  const name = Buffer.from(spec.backing ?? '');
  const l1Offset = Math.ceil((L.HEADER_LENGTH + name.length) / 8) * 8;
  let next = Math.ceil((l1Offset + l1Size * 8) / 512) * 512;
  const clusters = [...(spec.clusters ?? new Map()).entries()].sort((a, b) => a[0] - b[0]);
  const l2Offsets = new Map<number, number>();
  for (const [g] of clusters) {
    const l1i = Math.floor(g / entries);
    if (!l2Offsets.has(l1i)) {
      l2Offsets.set(l1i, next);
      next += entries * 8;
    }
  }
  next = Math.ceil(next / 512) * 512;
  const hosts = new Map<number, { offset: number; length?: number }>();
  const packed = new Map<number, Uint8Array>();
  next = Math.ceil(next / cs) * cs;
  for (const [g, c] of clusters) {
    const z = c.compressed ? deflateRawSync(c.data, { windowBits: 12, level: 9 }) : undefined;
    if (z && z.length < cs) packed.set(g, z);
    else {
      hosts.set(g, { offset: next });
      next += cs;
    }
  }
  for (const [g, z] of packed) {
    hosts.set(g, { offset: next, length: z.length });
    next += z.length;
  }
  const bytes = new Uint8Array(next);
  const v = new DataView(bytes.buffer);
  v.setUint32(L.H.magic, L.MAGIC);
  v.setUint32(L.H.version, L.VERSION);
  if (spec.backing !== undefined) {
    bytes.set(name, L.HEADER_LENGTH);
    v.setBigUint64(L.H.backingFileOffset, BigInt(L.HEADER_LENGTH));
    v.setUint32(L.H.backingFileSize, name.length);
  }
  v.setBigUint64(L.H.size, BigInt(spec.size));
  v.setUint8(L.H.clusterBits, cb);
  v.setUint8(L.H.l2Bits, l2b);
  v.setUint32(L.H.cryptMethod, spec.cryptMethod ?? 0);
  v.setBigUint64(L.H.l1TableOffset, BigInt(l1Offset));
  for (const [l1i, off] of l2Offsets) v.setBigUint64(l1Offset + l1i * 8, BigInt(off));
  for (const [g, c] of clusters) {
    const at = l2Offsets.get(Math.floor(g / entries))! + (g % entries) * 8;
    const host = hosts.get(g)!;
    if (host.length === undefined) {
      v.setBigUint64(at, BigInt(host.offset));
      bytes.set(c.data, host.offset);
    } else {
      v.setBigUint64(at, (1n << 63n) | (BigInt(host.length) << BigInt(63 - cb)) | BigInt(host.offset));
      bytes.set(packed.get(g)!, host.offset);
    }
  }
  return { bytes, l1Offset, l2Offsets, hosts };
}

const text = Buffer.from(Array.from({ length: 9000 }, (_, i) => `2024-03-01 host qemu[${i}]: sector ${i % 97} read\n`).join(''));

/** Cluster content: text (compresses), a byte pattern, or pseudo-random bytes (does not). */
function cluster(cs: number, seed: number, kind: 'text' | 'pattern' | 'random'): Uint8Array {
  if (kind === 'text') return new Uint8Array(text.subarray((seed * 211) % 1000, ((seed * 211) % 1000) + cs));
  if (kind === 'pattern') return new Uint8Array(cs).fill(0x30 + (seed % 0xc0));
  let x = seed + 1;
  return new Uint8Array(cs).map(() => ((x = (x * 16807) % 2147483647), x & 0xff));
}

/**
 * Clusters over three L2 tables (one, where a table covers 512 MiB): runs,
 * holes, compressed text, incompressible data, the last cluster.
 */
function mixed(clusterBits: number, l2Bits: number): QcowSpec {
  const cs = 2 ** clusterBits;
  const entries = 2 ** l2Bits;
  const tables = cs * entries >= 512 * MiB ? 1 : 3;
  const last = tables === 1 ? 12 : 2 * entries + 5;
  const clusters = new Map<number, { data: Uint8Array; compressed?: boolean }>();
  for (const g of [0, 1, 2, 6]) clusters.set(g, { data: cluster(cs, g, 'pattern') });
  clusters.set(3, { data: cluster(cs, 3, 'text'), compressed: true });
  clusters.set(4, { data: cluster(cs, 4, 'pattern'), compressed: true });
  clusters.set(5, { data: cluster(cs, 5, 'random'), compressed: true });
  if (tables === 3) {
    clusters.set(entries - 1, { data: cluster(cs, 7, 'text') });
    clusters.set(entries, { data: cluster(cs, 8, 'text'), compressed: true });
  }
  clusters.set(last, { data: cluster(cs, 9, 'text'), compressed: true });
  // Past the last cluster's start, and not whole sectors (qemu drops the partial one).
  return { clusterBits, l2Bits, size: last * cs + 2048 + 300, clusters };
}

function expected(spec: QcowSpec, below?: Uint8Array): Uint8Array {
  const cs = 2 ** (spec.clusterBits ?? 12);
  const out = new Uint8Array(Math.floor(spec.size / 512) * 512);
  if (below) out.set(below.subarray(0, Math.min(below.length, out.length)));
  for (const [g, c] of spec.clusters ?? []) if (g * cs < out.length) out.set(c.data.subarray(0, Math.min(cs, out.length - g * cs)), g * cs);
  return out;
}

const memOpener = (files: Record<string, Uint8Array>) =>
  new FileSetOpener(new Map(Object.entries(files).map(([n, b]) => [n, new MemorySource(n, b) as ByteSource])));

function openBytes(bytes: Uint8Array, name = 't.qcow'): Promise<Layer> {
  return qcowDriver.open(new MemorySource(name, bytes), { opener: memOpener({}) });
}

async function readAll(layer: Layer): Promise<Uint8Array> {
  return new ImageReader({ layers: [layer], size: layer.size }).read(0, new Uint8Array(layer.size));
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

// ---------------------------------------------------------------------------

describe('every cluster and L2 table size qemu opens', () => {
  const shapes: [number, number][] = [
    [9, 6],
    [9, 12],
    [12, 9],
    [16, 6],
    [16, 13],
    [13, 10],
  ];
  for (const [cb, l2b] of shapes) {
    it(`${2 ** cb}-byte clusters, ${2 ** l2b}-entry L2 tables: plain and compressed clusters read like qemu-img reads them`, async () => {
      const spec = mixed(cb, l2b);
      const name = `shape-${cb}-${l2b}.qcow`;
      write(name, buildQcow(spec).bytes);
      allSameAsQemu(name);
      expect(Buffer.compare(read(name + '.v.raw'), expected(spec))).toBe(0);
    });
  }

  it('a size that is not whole sectors is cut to whole sectors, as qemu does', () => {
    write('odd.qcow', buildQcow({ size: 1000 + 3 * 4096, clusters: new Map([[3, { data: cluster(4096, 1, 'text') }]]) }).bytes);
    allSameAsQemu('odd.qcow');
  });

  it('a backing file, which is probed', () => {
    const base = new Uint8Array(300 * KiB).map((_, i) => (i * 7) % 253);
    write('base.raw', base);
    const spec = { ...mixed(9, 6), backing: 'base.raw' };
    write('over.qcow', buildQcow(spec).bytes);
    allSameAsQemu('over.qcow');
    expect(Buffer.compare(read('over.qcow.v.raw'), expected(spec, base))).toBe(0);
  });
});

describe('compressed cluster entries', () => {
  it('hold the stored size above the host offset, below the flag', () => {
    for (const cb of [9, 12, 16]) {
      const t = new DataView(new ArrayBuffer(8));
      // The largest offset the field holds, or the largest exact one (2^53 - 1).
      const top = 2 ** Math.min(63 - cb, 53) - 1;
      t.setBigUint64(0, (1n << 63n) | (BigInt(2 ** cb - 1) << BigInt(63 - cb)) | BigInt(top));
      expect(parseL2Entry(t, 0, cb)).toEqual({ kind: 'compressed', hostOffset: top, hostLength: 2 ** cb - 1 });
      t.setBigUint64(0, (1n << 63n) | (77n << BigInt(63 - cb)) | 12345n);
      expect(parseL2Entry(t, 0, cb)).toEqual({ kind: 'compressed', hostOffset: 12345, hostLength: 77 });
    }
  });
});

describe('AES-encrypted images', () => {
  it('are refused as an unsupported feature (qemu-img made this one)', () => {
    ok('create', qemuImg(['create', '-q', '-f', 'qcow', '--object', 'secret,id=sec0,data=abc', '-o', 'encrypt.format=aes,encrypt.key-secret=sec0', 'aes.qcow', '1M'], { cwd: scratch.dir }));
    const v = vdisk(['info', 'aes.qcow'], { cwd: scratch.dir });
    expect(v.status).toBe(1);
    expect(v.stderr).toBe("vdisk: Could not open 'aes.qcow': Unsupported feature: AES-encrypted qcow image\n");
  });

  it('in the engine, with UnsupportedFeatureError', async () => {
    expect(await failure(openBytes(buildQcow({ size: MiB, cryptMethod: L.CRYPT_AES }).bytes))).toBeInstanceOf(UnsupportedFeatureError);
  });
});

describe('the header parser', () => {
  const base = buildQcow({ size: 4 * MiB, backing: 'b.raw' }).bytes.slice(0, L.HEADER_LENGTH);
  const poke = (at: number, bytes: number[]) => {
    const b = base.slice();
    b.set(bytes, at);
    return b;
  };
  const fails = (b: Uint8Array, detail: RegExp, offset: number) => {
    let err: unknown;
    try {
      parseHeader(b, 'h.qcow');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ImageFormatError);
    expect((err as Error).message).toMatch(detail);
    expect((err as ImageFormatError).offset).toBe(offset);
  };

  it('reads a sound header, with the L1 size the guest size needs', () => {
    expect(parseHeader(base, 'h.qcow')).toEqual({
      backingFileOffset: 48,
      backingFileSize: 5,
      size: 4 * MiB,
      clusterBits: 12,
      l2Bits: 9,
      l1TableOffset: 56,
      l1Size: 2,
    });
  });

  it("refuses what qemu refuses, in qemu's order and words, naming the field", () => {
    fails(poke(0, [0x51, 0x46, 0x49, 0xfa]), /Image not in qcow format/, L.H.magic);
    fails(poke(L.H.size, [0, 0, 0, 0, 0, 0, 0, 1]), /Image size is too small/, L.H.size);
    fails(poke(L.H.clusterBits, [8]), /Cluster size must be between 512 and 64k/, L.H.clusterBits);
    fails(poke(L.H.clusterBits, [17]), /Cluster size must be between 512 and 64k/, L.H.clusterBits);
    fails(poke(L.H.l2Bits, [5]), /L2 table size must be between 512 and 64k/, L.H.l2Bits);
    fails(poke(L.H.l2Bits, [14]), /L2 table size must be between 512 and 64k/, L.H.l2Bits);
    fails(poke(L.H.cryptMethod, [0, 0, 0, 2]), /invalid encryption method/, L.H.cryptMethod);
    fails(poke(L.H.size, [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), /Image too large/, L.H.size);
    // 512-byte clusters, 64-entry L2 tables: 2^28 L1 entries cover 2^43 bytes.
    const big = poke(L.H.size, [0, 0, 0x08, 0, 0, 0, 0, 0]);
    big.set([9, 6], L.H.clusterBits);
    fails(big, /Image too large/, L.H.size);
    fails(poke(L.H.backingFileSize, [0, 0, 0x04, 0]), /Backing file name too long/, L.H.backingFileSize);
  });

  it('refuses another version as unsupported, pointing to qcow2', () => {
    expect(() => parseHeader(poke(L.H.version, [0, 0, 0, 3]), 'h.qcow')).toThrow(UnsupportedFeatureError);
    expect(() => parseHeader(poke(L.H.version, [0, 0, 0, 2]), 'h.qcow')).toThrow(/qcow version 2 .*qcow2/);
  });

  it('answers any header bytes with a structure or a typed error', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(L.HEADER_LENGTH - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 10 }), (pokes) => {
        const b = base.slice();
        for (const [at, value] of pokes) b[at] = value;
        try {
          const h = parseHeader(b, 'h.qcow');
          expect(h.l1Size).toBeLessThanOrEqual(L.MAX_L1_ENTRIES);
          expect(Number.isSafeInteger(h.size)).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(VDiskError);
        }
      }),
    );
  });
});

describe('probing', () => {
  it('tells qcow from qcow2 by the version', async () => {
    const v1 = buildQcow({ size: MiB }).bytes;
    expect(qcowDriver.probe(v1, v1.length)).toBe(100);
    expect(qcow2Driver.probe(v1, v1.length)).toBe(0);
    expect((await probe(new MemorySource('a', v1))).name).toBe('qcow');
    const v2 = v1.slice();
    v2[7] = 2;
    expect(qcowDriver.probe(v2, v2.length)).toBe(0);
    expect(qcowDriver.probe(v1.subarray(0, 47), 47)).toBe(0);
  });

  it('-f qcow on a qcow2 image is refused, as by qemu-img', () => {
    ok('create', qemuImg(['create', '-q', '-f', 'qcow2', 'v3.qcow2', '1M'], { cwd: scratch.dir }));
    const q = qemuImg(['info', '-f', 'qcow', 'v3.qcow2'], { cwd: scratch.dir });
    const v = vdisk(['info', '-f', 'qcow', 'v3.qcow2'], { cwd: scratch.dir });
    expect(q.status).toBe(1);
    expect(v.status).toBe(1);
    expect(v.stderr).toMatch(/Could not open 'v3\.qcow2': .*qcow version 3/);
  });
});

describe('damaged tables', () => {
  const spec = mixed(12, 9);

  async function mapFails(mutate: (b: Built, v: DataView) => Uint8Array | void, structure: string, offset: (b: Built) => number, detail: RegExp): Promise<void> {
    const b = buildQcow(spec);
    const bytes = mutate(b, new DataView(b.bytes.buffer)) ?? b.bytes;
    const layer = await openBytes(bytes, 'd.qcow');
    const err = await failure(readAll(layer));
    expect(err).toBeInstanceOf(ImageFormatError);
    expect(err).toMatchObject({ file: 'd.qcow', structure, offset: offset(b) });
    expect((err as Error).message).toMatch(detail);
  }

  it('an L1 table past the end of the file is refused on opening (qemu reads zeros)', async () => {
    const b = buildQcow(spec);
    const err = await failure(openBytes(b.bytes.subarray(0, b.l1Offset + 8), 'd.qcow'));
    expect(err).toMatchObject({ structure: 'L1 table', offset: b.l1Offset });
    expect((err as Error).message).toBe(`L1 table at offset ${b.l1Offset}: L1 table of 24 bytes lies past the end of the file (${b.l1Offset + 8} bytes)`);
  });

  it('an L2 table past the end of the file', () =>
    mapFails((b, v) => v.setBigUint64(b.l1Offset + 8, BigInt(b.bytes.length - 100)), 'L1 table', (b) => b.l1Offset + 8, /L2 table at 0x[0-9a-f]+ \(L1 index 1\) lies past the end of the file/));

  it('a data cluster past the end of the file', () =>
    mapFails((b, v) => v.setBigUint64(b.l2Offsets.get(0)! + 6 * 8, BigInt(b.bytes.length + 4096 * 10) & ~4095n), 'L2 table', (b) => b.l2Offsets.get(0)! + 6 * 8, /data cluster at 0x[0-9a-f]+ is unaligned or lies past the end/));

  it('a data cluster that is not cluster aligned', () =>
    mapFails((b, v) => v.setBigUint64(b.l2Offsets.get(0)! + 6 * 8, BigInt(b.hosts.get(6)!.offset + 512)), 'L2 table', (b) => b.l2Offsets.get(0)! + 6 * 8, /is unaligned/));

  it('a compressed cluster past the end of the file', () =>
    mapFails((b, v) => v.setBigUint64(b.l2Offsets.get(0)! + 3 * 8, (1n << 63n) | (100n << 51n) | BigInt(b.bytes.length)), 'L2 table', (b) => b.l2Offsets.get(0)! + 3 * 8, /compressed cluster of 100 bytes/));

  it('a compressed cluster that does not inflate', () =>
    mapFails((b) => {
      const at = b.hosts.get(3)!.offset;
      b.bytes.fill(0xff, at, at + 8);
    }, 'compressed cluster', (b) => b.hosts.get(3)!.offset, /corrupt deflate stream|decodes to/));

  it('a compressed cluster that inflates to less than a cluster', () =>
    mapFails((b, v) => {
      const short = deflateRawSync(new Uint8Array(100).fill(7));
      const at = b.hosts.get(3)!.offset;
      b.bytes.set(short, at);
      v.setBigUint64(b.l2Offsets.get(0)! + 3 * 8, (1n << 63n) | (BigInt(short.length) << 51n) | BigInt(at));
    }, 'compressed cluster', (b) => b.hosts.get(3)!.offset, /decodes to 100 bytes, expected 4096/));
});

describe('random damage', () => {
  it('to the header and the tables gives a correct answer or a typed error, never a hang', async () => {
    const b = buildQcow(mixed(9, 6));
    const metaEnd = Math.min(...[...b.hosts.values()].map((h) => h.offset));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(metaEnd - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), async (pokes) => {
        const bytes = b.bytes.slice();
        for (const [at, value] of pokes) bytes[at] = value;
        try {
          const layer = await openBytes(bytes, 'f.qcow');
          let covered = 0;
          for await (const e of mapImage({ layers: [layer], size: layer.size })) {
            expect(e.start).toBe(covered);
            covered += e.length;
          }
          expect(covered).toBe(layer.size);
          if (layer.size <= 16 * MiB) await readAll(layer);
        } catch (e) {
          expect(e).toBeInstanceOf(VDiskError);
        }
      }),
      { numRuns: 300 },
    );
  });
});


describe('a 1 TiB image with 512-byte clusters and 64-entry L2 tables (a 256 MiB L1 table)', () => {
  const l1Bytes = 2 ** 40 / 2 ** 15 * 8;
  const l1 = 512;
  const l2 = l1 + l1Bytes;
  const data = l2 + 512;
  const be64 = (n: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n));
    return b;
  };

  function source(): SparseSource {
    const h = buildQcow({ size: 2 ** 40, clusterBits: 9, l2Bits: 6 }).bytes.slice(0, L.HEADER_LENGTH);
    new DataView(h.buffer).setBigUint64(L.H.l1TableOffset, BigInt(l1));
    const last = l1Bytes / 8 - 1;
    return new SparseSource('big.qcow', data + 512, [
      [0, h],
      [l1 + last * 8, be64(l2)],
      [l2 + 63 * 8, be64(data)],
      [data, new Uint8Array(512).fill(0x6b)],
    ]);
  }

  it('opens and reports info without reading the L1 table', async () => {
    const src = source();
    const layer = await qcowDriver.open(src, { opener: memOpener({}) });
    expect(layer.size).toBe(2 ** 40);
    expect(layer.facts()).toEqual({ clusterSize: 512, dirty: false });
    expect(src.bytesRead).toBeLessThan(4 * KiB);
  });

  it('reads the last sector through one page of the L1 table', async () => {
    const src = source();
    const image = await openImage(src, { opener: memOpener({}) });
    const out = await new ImageReader(image).read(2 ** 40 - 512, new Uint8Array(512));
    expect(out.every((x) => x === 0x6b)).toBe(true);
    expect(src.bytesRead).toBeLessThan(256 * KiB);
  });
});
