// QED beyond the conformance fixtures: images built here from the
// specification (docs/interop/qed_spec.rst), checked against qemu-img where
// it reads them; images with 1-cluster tables, which qemu-img creates but
// cannot open; damaged tables and headers, which must give typed errors
// naming the structure and offset; random damage; and a file with 1 GiB
// tables, of which only the pages needed are read.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { join } from 'node:path';
import { qemuImg, vdisk } from '../helpers/run.ts';
import { ok, scratchDir } from '../helpers/scratch.ts';
import { SparseSource } from '../helpers/sparse-source.ts';
import { parseHeader } from '../../engine/drivers/qed/header.ts';
import { qedDriver } from '../../engine/drivers/qed/driver.ts';
import * as L from '../../engine/drivers/qed/layout.ts';
import { MemorySource, type ByteSource } from '../../engine/io/source.ts';
import { FileSetOpener } from '../../engine/io/opener.ts';
import { openImage } from '../../engine/image.ts';
import { ImageReader } from '../../engine/ops/read.ts';
import { mapImage } from '../../engine/ops/map.ts';
import { ImageFormatError, UnsupportedFeatureError, VDiskError } from '../../engine/errors.ts';
import type { Layer } from '../../engine/driver.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const scratch = scratchDir('qed');
const { read, write, sameAsQemu, allSameAsQemu } = scratch;

// ---------------------------------------------------------------------------
// QED images written from the specification

interface QedSpec {
  clusterSize?: number;
  tableSize?: number;
  /** Clusters before the L1 table. */
  headerSize?: number;
  size: number;
  features?: number;
  backing?: string;
  /** Guest cluster index -> one cluster of data, or a zero cluster. */
  clusters?: Map<number, Uint8Array | 'zero'>;
}

interface Built {
  bytes: Uint8Array;
  l1Offset: number;
  /** Host offset of the L2 table of each L1 index. */
  l2Offsets: Map<number, number>;
  /** Host offset of each data cluster, by guest cluster. */
  dataOffsets: Map<number, number>;
}

/** Header, L1 table, the L2 tables in L1 order, then the data clusters in guest order. */
function buildQed(spec: QedSpec): Built {
  const cs = spec.clusterSize ?? 4 * KiB;
  const ts = spec.tableSize ?? 2;
  const hs = spec.headerSize ?? 1;
  const tableBytes = cs * ts;
  const entries = tableBytes / 8;
  const clusters = [...(spec.clusters ?? new Map()).entries()].sort((a, b) => a[0] - b[0]);
  const l1Offset = hs * cs;
  let next = l1Offset + tableBytes;
  const l2Offsets = new Map<number, number>();
  for (const [g] of clusters) {
    const l1i = Math.floor(g / entries);
    if (!l2Offsets.has(l1i)) {
      l2Offsets.set(l1i, next);
      next += tableBytes;
    }
  }
  const dataOffsets = new Map<number, number>();
  for (const [g, c] of clusters) {
    if (c === 'zero') continue;
    dataOffsets.set(g, next);
    next += cs;
  }
  const bytes = new Uint8Array(next);
  const v = new DataView(bytes.buffer);
  v.setUint32(L.H.magic, L.MAGIC, true);
  v.setUint32(L.H.clusterSize, cs, true);
  v.setUint32(L.H.tableSize, ts, true);
  v.setUint32(L.H.headerSize, hs, true);
  let features = spec.features ?? 0;
  if (spec.backing !== undefined) {
    features |= L.F_BACKING_FILE;
    const name = Buffer.from(spec.backing);
    bytes.set(name, L.HEADER_LENGTH);
    v.setUint32(L.H.backingFilenameOffset, L.HEADER_LENGTH, true);
    v.setUint32(L.H.backingFilenameSize, name.length, true);
  }
  v.setBigUint64(L.H.features, BigInt(features), true);
  v.setBigUint64(L.H.l1TableOffset, BigInt(l1Offset), true);
  v.setBigUint64(L.H.imageSize, BigInt(spec.size), true);
  for (const [l1i, off] of l2Offsets) v.setBigUint64(l1Offset + l1i * 8, BigInt(off), true);
  for (const [g, c] of clusters) {
    const l2 = l2Offsets.get(Math.floor(g / entries))!;
    const at = l2 + (g % entries) * 8;
    if (c === 'zero') v.setBigUint64(at, 1n, true);
    else {
      v.setBigUint64(at, BigInt(dataOffsets.get(g)!), true);
      bytes.set(c, dataOffsets.get(g)!);
    }
  }
  return { bytes, l1Offset, l2Offsets, dataOffsets };
}

const text = Buffer.from(Array.from({ length: 4000 }, (_, i) => `2024-03-01 host qemu[${i}]: cluster ${i % 89} written\n`).join(''));

/** Cluster content: a byte pattern with a stretch of text, so no two clusters are alike. */
function cluster(cs: number, seed: number): Uint8Array {
  const c = new Uint8Array(cs).fill(0x40 + (seed % 0xa0));
  c.set(text.subarray(seed * 37, seed * 37 + Math.min(cs / 2, 1000)), cs / 4);
  return c;
}

/** The guest bytes a spec describes, with `below` (the backing file's bytes) under unallocated clusters. */
function expected(spec: QedSpec, below?: Uint8Array): Uint8Array {
  const cs = spec.clusterSize ?? 4 * KiB;
  const out = new Uint8Array(spec.size);
  if (below) out.set(below.subarray(0, Math.min(below.length, out.length)));
  for (const [g, c] of spec.clusters ?? []) {
    if (c === 'zero') out.fill(0, g * cs, (g + 1) * cs);
    else out.set(c.subarray(0, Math.min(cs, spec.size - g * cs)), g * cs);
  }
  return out;
}

/** A spec over two L2 tables: data runs, a zero cluster, holes, the last cluster. */
function mixed(tableSize: number): QedSpec {
  const cs = 4 * KiB;
  const entries = (cs * tableSize) / 8;
  const clusters = new Map<number, Uint8Array | 'zero'>();
  for (const g of [0, 1, 2, 5, entries - 1, entries, entries + 1]) clusters.set(g, cluster(cs, g));
  clusters.set(3, 'zero');
  clusters.set(entries + 7, 'zero');
  const size = (entries + 16) * cs;
  clusters.set(size / cs - 1, cluster(cs, 99));
  return { clusterSize: cs, tableSize, size, clusters };
}

const memOpener = (files: Record<string, Uint8Array>) =>
  new FileSetOpener(new Map(Object.entries(files).map(([n, b]) => [n, new MemorySource(n, b) as ByteSource])));

async function openBytes(bytes: Uint8Array, name = 't.qed'): Promise<Layer> {
  return qedDriver.open(new MemorySource(name, bytes), { opener: memOpener({}) });
}

async function readAll(bytes: Uint8Array, files: Record<string, Uint8Array> = {}): Promise<Uint8Array> {
  const opener = memOpener(files);
  const image = await openImage(new MemorySource('t.qed', bytes), { opener });
  return new ImageReader(image).read(0, new Uint8Array(image.size));
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

// ---------------------------------------------------------------------------

describe('images built from the specification', () => {
  it('read like qemu-img reads them: data runs, zero clusters, holes, two L2 tables', async () => {
    const spec = mixed(2);
    write('mixed.qed', buildQed(spec).bytes);
    allSameAsQemu('mixed.qed');
    expect(Buffer.compare(await readAll(buildQed(spec).bytes), expected(spec))).toBe(0);
  });

  it('follow a raw backing file named with the "no probe" bit, and one that is probed', () => {
    const base = new Uint8Array(200 * KiB).map((_, i) => (i * 13) % 251);
    write('base.raw', base);
    const spec = { ...mixed(2), backing: 'base.raw' };
    write('over-raw.qed', buildQed({ ...spec, features: L.F_BACKING_FORMAT_NO_PROBE }).bytes);
    allSameAsQemu('over-raw.qed');
    write('over-probed.qed', buildQed(spec).bytes);
    allSameAsQemu('over-probed.qed');
    expect(Buffer.compare(read('over-raw.qed.v.raw'), expected(spec, base))).toBe(0);
  });

  it('read through the engine over a backing file, a layer below', async () => {
    const base = new Uint8Array(300 * KiB).map((_, i) => (i * 31) % 249);
    const spec = { ...mixed(2), backing: 'base.raw', features: L.F_BACKING_FORMAT_NO_PROBE };
    expect(Buffer.compare(await readAll(buildQed(spec).bytes, { 'base.raw': base }), expected(spec, base))).toBe(0);
  });

  it('with a longer header and unknown compat and autoclear bits, still read like qemu-img', () => {
    const b = buildQed({ ...mixed(4), headerSize: 3 });
    new DataView(b.bytes.buffer).setBigUint64(L.H.compatFeatures, 0x80n, true);
    new DataView(b.bytes.buffer).setBigUint64(L.H.autoclearFeatures, 0x100n, true);
    write('long-header.qed', b.bytes);
    allSameAsQemu('long-header.qed');
  });
});

describe('1-cluster tables', () => {
  const spec = mixed(1);
  const built = buildQed(spec);

  it('are refused by qemu-img, whose table offset check cannot pass for them', () => {
    write('t1.qed', built.bytes);
    const q = qemuImg(['info', 't1.qed'], { cwd: scratch.dir });
    expect(q.status).toBe(1);
    expect(q.stderr).toMatch(/QED table offset is invalid/);
  });

  it('are read here, as the specification allows them', async () => {
    write('t1.qed', built.bytes);
    const info = vdisk(['info', '--output=json', 't1.qed'], { cwd: scratch.dir });
    ok('vdisk info', info);
    expect(JSON.parse(info.stdout)).toMatchObject({ format: 'qed', 'cluster-size': 4096, 'virtual-size': spec.size });
    ok('vdisk convert', vdisk(['convert', '-O', 'raw', 't1.qed', 't1.raw'], { cwd: scratch.dir }));
    expect(Buffer.compare(read('t1.raw'), expected(spec))).toBe(0);

    const image = await openImage(new MemorySource('t1.qed', built.bytes), { opener: memOpener({}) });
    const entries: unknown[] = [];
    for await (const e of mapImage(image)) entries.push({ start: e.start, length: e.length, zero: e.zero, data: e.data, present: e.present, offset: e.offset });
    expect(entries.slice(0, 4)).toEqual([
      { start: 0, length: 12 * KiB, zero: false, data: true, present: true, offset: built.dataOffsets.get(0) },
      { start: 12 * KiB, length: 4 * KiB, zero: true, data: false, present: true, offset: undefined },
      { start: 16 * KiB, length: 4 * KiB, zero: true, data: false, present: false, offset: undefined },
      { start: 20 * KiB, length: 4 * KiB, zero: false, data: true, present: true, offset: built.dataOffsets.get(5) },
    ]);
  });
});

describe('backing file names', () => {
  it('come with format raw only under the "no probe" bit', async () => {
    expect((await openBytes(buildQed({ size: MiB, backing: 'b.img', features: L.F_BACKING_FORMAT_NO_PROBE }).bytes)).backing).toEqual({ name: 'b.img', format: 'raw' });
    expect((await openBytes(buildQed({ size: MiB, backing: 'b.img' }).bytes)).backing).toEqual({ name: 'b.img' });
  });

  it('end at a NUL, and an empty one is none, as qemu reads them into C strings', async () => {
    expect((await openBytes(buildQed({ size: MiB, backing: 'b.img\0junk' }).bytes)).backing).toEqual({ name: 'b.img' });
    expect((await openBytes(buildQed({ size: MiB, backing: '' }).bytes)).backing).toBeUndefined();
  });

  it('are ignored without the backing file bit', async () => {
    const b = buildQed({ size: MiB, backing: 'b.img' }).bytes;
    b[L.H.features] = 0;
    expect((await openBytes(b)).backing).toBeUndefined();
  });
});

describe('the header parser', () => {
  const base = buildQed({ size: 4 * MiB, backing: 'base.raw' }).bytes;
  const fileSize = 64 * KiB;
  const poke = (at: number, bytes: number[]) => {
    const b = base.slice(0, L.HEADER_LENGTH);
    b.set(bytes, at);
    return b;
  };
  const fails = (b: Uint8Array, detail: RegExp, offset: number, size = fileSize) => {
    let err: unknown;
    try {
      parseHeader(b, size, 'h.qed');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ImageFormatError);
    expect((err as Error).message).toMatch(detail);
    expect((err as ImageFormatError).offset).toBe(offset);
  };

  it('reads a sound header', () => {
    expect(parseHeader(base.slice(0, L.HEADER_LENGTH), fileSize, 'h.qed')).toEqual({
      clusterSize: 4096,
      tableSize: 2,
      headerSize: 1,
      features: L.F_BACKING_FILE,
      l1TableOffset: 4096,
      imageSize: 4 * MiB,
      backingName: { offset: L.HEADER_LENGTH, size: 8 },
      fileClusters: fileSize,
    });
  });

  it('refuses what qemu refuses, in its order, naming the field', () => {
    fails(poke(0, [0x51, 0x45, 0x44, 0x21]), /Image not in QED format/, L.H.magic);
    fails(poke(L.H.clusterSize, [0x00, 0x30, 0, 0]), /QED cluster size is invalid/, L.H.clusterSize);
    fails(poke(L.H.clusterSize, [0x00, 0x08, 0, 0]), /QED cluster size is invalid/, L.H.clusterSize);
    fails(poke(L.H.clusterSize, [0, 0, 0, 0x08]), /QED cluster size is invalid/, L.H.clusterSize);
    fails(poke(L.H.tableSize, [3, 0, 0, 0]), /QED table size is invalid/, L.H.tableSize);
    fails(poke(L.H.tableSize, [32, 0, 0, 0]), /QED table size is invalid/, L.H.tableSize);
    fails(poke(L.H.imageSize, [1, 0, 0x40, 0]), /QED image size is invalid/, L.H.imageSize);
    // 4 KiB clusters, 2-cluster tables: at most 1024 * 1024 * 4 KiB.
    fails(poke(L.H.imageSize, [0, 0x02, 0, 0, 1, 0, 0, 0]), /QED image size is invalid/, L.H.imageSize);
    fails(poke(L.H.l1TableOffset, [0, 0x08, 0, 0]), /QED table offset is invalid/, L.H.l1TableOffset, 8 * KiB + 100);
    fails(poke(L.H.l1TableOffset, [0, 0, 0, 0]), /QED table offset is invalid/, L.H.l1TableOffset);
    fails(poke(L.H.l1TableOffset, [0, 0x12, 0, 0]), /QED table offset is invalid/, L.H.l1TableOffset);
    fails(poke(L.H.headerSize, [0, 0, 0x10, 0]), /QED table offset is invalid/, L.H.l1TableOffset);
    fails(poke(L.H.backingFilenameOffset, [0xf9, 0x0f, 0, 0]), /QED backing filename offset is invalid/, L.H.backingFilenameOffset);
  });

  it('refuses a name longer than qemu reads', () => {
    const b = poke(L.H.headerSize, [2, 0, 0, 0]);
    b.set([0, 0x20, 0, 0], L.H.l1TableOffset);
    b.set([0, 0x10, 0, 0], L.H.backingFilenameSize);
    fails(b, /Failed to read backing filename/, L.H.backingFilenameSize);
  });

  it('refuses unknown feature bits as an unsupported feature', () => {
    expect(() => parseHeader(poke(L.H.features, [0x11]), fileSize, 'h.qed')).toThrow(UnsupportedFeatureError);
    expect(() => parseHeader(poke(L.H.features + 5, [1]), fileSize, 'h.qed')).toThrow(/QED features 10000000000/);
  });

  it('answers any header bytes with a structure or a typed error', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(L.HEADER_LENGTH - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 10 }), fc.nat(1 << 30), (pokes, size) => {
        const b = base.slice(0, L.HEADER_LENGTH);
        for (const [at, value] of pokes) b[at] = value;
        try {
          const h = parseHeader(b, size, 'h.qed');
          expect(h.l1TableOffset + h.tableSize * h.clusterSize).toBeLessThanOrEqual(size);
          expect(Number.isSafeInteger(h.imageSize)).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(VDiskError);
        }
      }),
    );
  });
});

describe('damaged tables', () => {
  const spec = mixed(2);

  async function mapFails(mutate: (b: Built, v: DataView) => void, structure: string, offset: (b: Built) => number, detail: RegExp): Promise<void> {
    const b = buildQed(spec);
    mutate(b, new DataView(b.bytes.buffer));
    const layer = await openBytes(b.bytes, 'd.qed');
    const image = { layers: [layer], size: layer.size };
    const err = await failure((async () => {
      for await (const e of mapImage(image)) void e;
    })());
    expect(err).toBeInstanceOf(ImageFormatError);
    expect(err).toMatchObject({ file: 'd.qed', structure, offset: offset(b) });
    expect((err as Error).message).toMatch(detail);
  }

  it('an L2 table past the end of the file', () =>
    mapFails((b, v) => v.setBigUint64(b.l1Offset + 8, BigInt(b.bytes.length), true), 'L1 table', (b) => b.l1Offset + 8, /L2 table offset 0x[0-9a-f]+ is invalid \(L1 index 1\)/));

  it('an L2 table offset of 1 (the zero-cluster value, meaningless in L1)', () =>
    mapFails((b, v) => v.setBigUint64(b.l1Offset, 1n, true), 'L1 table', (b) => b.l1Offset, /L2 table offset 0x1 is invalid/));

  it('an L2 table whose second cluster is past the end of the file', () =>
    mapFails((b, v) => v.setBigUint64(b.l1Offset, BigInt(b.bytes.length - 4096), true), 'L1 table', (b) => b.l1Offset, /is invalid/));

  it('a data cluster offset that is not cluster aligned', () =>
    mapFails((b, v) => v.setBigUint64(b.l2Offsets.get(0)! + 5 * 8, BigInt(b.dataOffsets.get(5)! + 512), true), 'L2 table', (b) => b.l2Offsets.get(0)! + 5 * 8, /data cluster offset 0x[0-9a-f]+ is invalid \(L1 index 0, L2 index 5\)/));

  it('a data cluster inside the header clusters', async () => {
    const b = buildQed({ ...spec, headerSize: 2 });
    new DataView(b.bytes.buffer).setBigUint64(b.l2Offsets.get(0)! + 5 * 8, 4096n, true);
    const layer = await openBytes(b.bytes, 'd.qed');
    const err = await failure(layer.getMapping(5 * 4096, 4096));
    expect(err).toMatchObject({ structure: 'L2 table', offset: b.l2Offsets.get(0)! + 5 * 8 });
    expect((err as Error).message).toMatch(/data cluster offset 0x1000 is invalid/);
  });

  it('the second cluster of a data run past the end of the file: the first still maps', async () => {
    const b = buildQed(spec);
    // Guest clusters 0, 1, 2 are a run; the file now ends where cluster 1 starts.
    const cut = b.dataOffsets.get(1)!;
    const layer = await openBytes(b.bytes.subarray(0, cut), 'd.qed');
    expect(await layer.getMapping(0, MiB)).toMatchObject({ kind: 'data', length: 4096, hostOffset: b.dataOffsets.get(0) });
    const err = await failure(layer.getMapping(4096, MiB));
    expect(err).toMatchObject({ structure: 'L2 table', offset: b.l2Offsets.get(0)! + 8 });
  });
});

describe('random damage', () => {
  it('to the header and the tables gives a correct answer or a typed error, never a hang', async () => {
    const b = buildQed(mixed(2));
    const metaEnd = Math.min(...b.dataOffsets.values());
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(metaEnd - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), async (pokes) => {
        const bytes = b.bytes.slice();
        for (const [at, value] of pokes) bytes[at] = value;
        try {
          const layer = await openBytes(bytes, 'f.qed');
          const image = { layers: [layer], size: layer.size };
          let covered = 0;
          for await (const e of mapImage(image)) {
            expect(e.start).toBe(covered);
            covered += e.length;
          }
          expect(covered).toBe(layer.size);
        } catch (e) {
          expect(e).toBeInstanceOf(VDiskError);
        }
      }),
      { numRuns: 300 },
    );
  });
});


describe('tables of 16 clusters of 64 MiB (1 GiB each)', () => {
  const cs = 64 * MiB;
  const tableBytes = 16 * cs;
  const l1 = cs;
  const l2 = l1 + tableBytes;
  const data = l2 + tableBytes;
  const u64 = (n: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
    return b;
  };

  function source(): SparseSource {
    const h = buildQed({ clusterSize: cs, tableSize: 16, size: 2 ** 40 }).bytes.slice(0, L.HEADER_LENGTH);
    return new SparseSource('big.qed', data + 2 * cs, [
      [0, h],
      [l1, u64(l2)],
      [l2 + 3 * 8, u64(data)],
      [l2 + 4 * 8, u64(1)],
      [l2 + 16000 * 8, u64(data + cs)],
      [data + 100, new Uint8Array([0x5a, 0x5b])],
    ]);
  }

  it('are read a page at a time: mapping 1 TiB reads a few hundred KiB', async () => {
    const src = source();
    const layer = await qedDriver.open(src, { opener: memOpener({}) });
    const entries = [];
    for await (const e of mapImage({ layers: [layer], size: layer.size })) entries.push([e.start / cs, e.length / cs, e.data, e.zero, e.present]);
    expect(entries).toEqual([
      [0, 3, false, true, false],
      [3, 1, true, false, true],
      [4, 1, false, true, true],
      [5, 15995, false, true, false],
      [16000, 1, true, false, true],
      [16001, 383, false, true, false],
    ]);
    expect(src.bytesRead).toBeLessThan(MiB);
  });

  it('and a data cluster reads from its place', async () => {
    const src = source();
    const image = await openImage(src, { opener: memOpener({}) });
    const out = await new ImageReader(image).read(3 * cs + 99, new Uint8Array(4));
    expect([...out]).toEqual([0, 0x5a, 0x5b, 0]);
  });
});

describe('probing', () => {
  it('needs the magic and a whole header', () => {
    const b = buildQed({ size: MiB }).bytes;
    expect(qedDriver.probe(b.subarray(0, 2048), b.length)).toBe(100);
    expect(qedDriver.probe(b.subarray(0, 63), 63)).toBe(0);
    const other = b.slice(0, 2048);
    other[3] = 1;
    expect(qedDriver.probe(other, b.length)).toBe(0);
  });
});
