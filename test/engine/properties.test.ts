// Property tests (fast-check) over what every driver answers, in-process:
//  - getMapping tiles [0, size): one run from each offset, inside the disk,
//    and any two answers about the same byte agree (no gap, no overlap);
//  - a read through the engine equals what the mappings promise (zeros,
//    bytes at the host offset, the decoded unit, the layer below);
//  - a compressed unit decodes into exactly its size and never past it,
//    even from a stream that would inflate far beyond it;
//  - the pure header parsers answer random or mutated bytes with a struct or
//    a typed error, never another exception.
// Over the conformance fixtures of every format and over images that the
// engine's writers make from random guest content.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { deflateRawSync, deflateSync } from 'node:zlib';
import { ensureFixtures, FIXTURES_DIR, loadManifest } from '../helpers/fixtures.ts';
import { describeRun, qemuImg, run } from '../helpers/run.ts';
import { NodeFileSource, nodeOpener } from '../../cli/node-io.ts';
import { openImage, openLayer, type Image } from '../../engine/image.ts';
import { ImageReader } from '../../engine/ops/read.ts';
import { EngineApi, type Workspace } from '../../engine/api.ts';
import { VDiskError } from '../../engine/errors.ts';
import { FileSetOpener } from '../../engine/io/opener.ts';
import { MemorySource, type ByteSource } from '../../engine/io/source.ts';
import type { ByteSink } from '../../engine/io/sink.ts';
import type { Compressor } from '../../engine/codecs/compress.ts';
import type { CompressedUnit, Layer, Mapping } from '../../engine/driver.ts';
import { loadWasmInflate } from '../../engine/kernels/inflate.ts';
import { generatedCases, type GeneratedCase } from '../fuzz/generated.ts';
import * as qcow2 from '../../engine/drivers/qcow2/header.ts';
import * as qcow from '../../engine/drivers/qcow/header.ts';
import * as qed from '../../engine/drivers/qed/header.ts';
import * as vdi from '../../engine/drivers/vdi/header.ts';
import * as parallels from '../../engine/drivers/parallels/header.ts';
import * as vmdk from '../../engine/drivers/vmdk/header.ts';
import * as sesparse from '../../engine/drivers/vmdk/sesparse.ts';
import { DescriptorError, parseExtentLines } from '../../engine/drivers/vmdk/descriptor.ts';
import * as vpc from '../../engine/drivers/vpc/header.ts';
import * as vhdx from '../../engine/drivers/vhdx/header.ts';
import * as vhdxLog from '../../engine/drivers/vhdx/log.ts';

ensureFixtures();
const fixtures = loadManifest().filter((f) => !f.error && !f.missing);
const fixturePath = (file: string) => join(FIXTURES_DIR, file);

/** The one-line context every assertion message starts with. */
const where = (name: string, offset: number, maxLength?: number) => `${name}: getMapping(${offset}${maxLength === undefined ? '' : `, ${maxLength}`})`;

async function openFixture(file: string): Promise<Image> {
  return openImage(await NodeFileSource.open(fixturePath(file)), { opener: nodeOpener });
}

/** Every run of one layer from 0 to its end, asking for the rest of the disk each time. */
async function walk(layer: Layer, name: string, limit = 200_000): Promise<Mapping[]> {
  const out: Mapping[] = [];
  for (let pos = 0; pos < layer.size; ) {
    const m = await layer.getMapping(pos, layer.size - pos);
    expect(m.offset, where(name, pos)).toBe(pos);
    expect(m.kind, where(name, pos)).not.toBe('eof');
    expect(m.length, where(name, pos)).toBeGreaterThan(0);
    expect(pos + m.length, where(name, pos)).toBeLessThanOrEqual(layer.size);
    out.push(m);
    pos += m.length;
    if (out.length > limit) throw new Error(`${name}: more than ${limit} runs`);
  }
  const end = await layer.getMapping(layer.size, 4096);
  expect(end.kind, where(name, layer.size)).toBe('eof');
  return out;
}

/** The walked run holding guest byte `offset` (runs are sorted and tile the disk). */
function runAt(runs: Mapping[], offset: number): Mapping {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (runs[mid]!.offset <= offset) lo = mid;
    else hi = mid - 1;
  }
  return runs[lo]!;
}

/** Where guest byte `at` of run `m` is on the host, for runs that say so; compressed runs name their unit. */
function hostOf(m: Mapping, at: number): string {
  if (m.kind === 'data') return `${m.source.name}@${m.hostOffset + (at - m.offset)}`;
  if (m.kind === 'compressed') return `unit ${m.unit.source.name}@${m.unit.hostOffset}+${at - m.unit.guestOffset}`;
  return '';
}

/** An answer for [offset, offset + length) agrees with the walk on every run it overlaps. */
function agreesWithWalk(runs: Mapping[], m: Mapping, name: string): void {
  for (let at = m.offset; at < m.offset + m.length; ) {
    const w = runAt(runs, at);
    const label = `${where(name, m.offset)} at guest byte ${at}`;
    expect(m.kind, label).toBe(w.kind);
    expect(hostOf(m, at), label).toBe(hostOf(w, at));
    at = w.offset + w.length;
  }
}

/** What the mappings promise for [offset, offset + out.length) of layer `depth` and below, read without resolve.ts. */
async function promised(layers: readonly Layer[], depth: number, offset: number, out: Uint8Array): Promise<void> {
  const layer = layers[depth];
  for (let done = 0; done < out.length; ) {
    const at = offset + done;
    const part = out.subarray(done);
    // Below the bottom layer, and past the end of a shorter backing file, the disk reads as zeros.
    if (!layer || at >= layer.size) return void part.fill(0);
    const m = await layer.getMapping(at, part.length);
    expect(m.offset).toBe(at);
    expect(m.length).toBeGreaterThan(0);
    const dest = part.subarray(0, m.length);
    if (m.kind === 'zero') dest.fill(0);
    else if (m.kind === 'data') await m.source.read(m.hostOffset, m.length, dest);
    else if (m.kind === 'backing') await promised(layers, depth + 1, at, dest);
    else if (m.kind === 'compressed') {
      const unit = await decodeBounded(layer, m.unit);
      dest.set(unit.subarray(at - m.unit.guestOffset, at - m.unit.guestOffset + m.length));
    } else throw new Error(`eof inside the disk at ${at}`);
    done += m.length;
  }
}

const SENTINEL = 0xa7;

/** Decodes a unit into exactly `unit.size` bytes of a larger buffer and checks that nothing past them was written. */
async function decodeBounded(layer: Layer, unit: CompressedUnit): Promise<Uint8Array> {
  const room = new Uint8Array(unit.size + 4096).fill(SENTINEL);
  const out = room.subarray(0, unit.size);
  await layer.decode(unit, out);
  expect(room.subarray(unit.size).every((b) => b === SENTINEL), `decoding the unit at ${unit.hostOffset} wrote past its ${unit.size} bytes`).toBe(true);
  return out;
}

// ---------------------------------------------------------------------------

/** Random queries against a walk of every layer: each answer starts where asked, stays inside, and agrees with the walk. */
async function tiles(name: string, image: Image): Promise<void> {
  for (const [depth, layer] of image.layers.entries()) {
    const label = `${name} layer ${depth}`;
    const runs = await walk(layer, label);
    await fc.assert(
      fc.asyncProperty(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.oneof(fc.integer({ min: 1, max: 1 << 20 }), fc.constant(Number.MAX_SAFE_INTEGER)), async (f, maxLength) => {
        const offset = Math.floor(f * layer.size);
        const m = await layer.getMapping(offset, maxLength);
        expect(m.offset, where(label, offset, maxLength)).toBe(offset);
        expect(m.length, where(label, offset, maxLength)).toBeGreaterThan(0);
        expect(m.length, where(label, offset, maxLength)).toBeLessThanOrEqual(Math.min(maxLength, layer.size - offset));
        agreesWithWalk(runs, m, label);
      }),
      { numRuns: 25 },
    );
  }
}

/** Random reads through ImageReader against what the mappings promise. */
async function readsAsPromised(name: string, image: Image): Promise<void> {
  const reader = new ImageReader(image);
  await fc.assert(
    fc.asyncProperty(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.integer({ min: 1, max: 192 * 1024 }), async (f, len) => {
      const offset = Math.floor(f * image.size);
      const length = Math.min(len, image.size - offset);
      const ours = await reader.read(offset, new Uint8Array(length));
      const expected = new Uint8Array(length);
      await promised(image.layers, 0, offset, expected);
      expect(Buffer.compare(ours, expected), `${name}: read(${offset}, ${length})`).toBe(0);
    }),
    { numRuns: 12 },
  );
}

describe('getMapping tiles [0, size) on every fixture', () => {
  it.each(fixtures.map((f) => [f.name, f.file] as const))('%s', async (name, file) => tiles(name, await openFixture(file)));
});

describe('a read through the engine equals what the mappings promise', () => {
  it.each(fixtures.map((f) => [f.name, f.file] as const))('%s', async (name, file) => readsAsPromised(name, await openFixture(file)));
});

describe('the same on images no fixture has (seSparse and COWD extents, a VHDX log to replay)', () => {
  let dir: string;
  let made: GeneratedCase[];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vdisk-props-gen-'));
    made = generatedCases(dir);
    return () => rmSync(dir, { recursive: true, force: true });
  });

  it('tile and read as promised', async () => {
    const images = [...new Set(made.map((g) => g.image))];
    expect(images.length).toBeGreaterThanOrEqual(3);
    for (const file of images) {
      const image = await openImage(await NodeFileSource.open(file), { opener: nodeOpener });
      await tiles(file, image);
      await readsAsPromised(file, image);
    }
  });
});

// ---------------------------------------------------------------------------

/** A sink that keeps the file in memory and publishes it into `files` on commit. */
function memorySink(name: string, files: Map<string, ByteSource>): ByteSink {
  let bytes = new Uint8Array(1 << 16);
  let length = 0;
  return {
    name,
    async write(offset, data) {
      const end = offset + data.length;
      if (end > bytes.length) {
        const grown = new Uint8Array(Math.max(end, bytes.length * 2));
        grown.set(bytes.subarray(0, length));
        bytes = grown;
      }
      bytes.set(data, offset);
      length = Math.max(length, end);
    },
    async commit(finalLength) {
      const out = new Uint8Array(finalLength);
      out.set(bytes.subarray(0, Math.min(length, finalLength)));
      files.set(name, new MemorySource(name, out));
    },
    async abort() {},
  };
}

/** Node's zlib, in the thread: qcow2's 4 KiB-window raw deflate and VMDK's zlib. */
const testCompressor: Compressor = {
  async compress(data, codec) {
    return new Uint8Array(codec === 'zlib' ? deflateSync(data, { level: 6 }) : deflateRawSync(data, { level: 6, windowBits: 12, memLevel: 9 }));
  },
  close() {},
};

/** Guest content in runs: data of several kinds, zeros, text. */
const contentArb = fc
  .record({
    sectors: fc.integer({ min: 1, max: 6 * 2048 }),
    runs: fc.array(fc.record({ at: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), sectors: fc.integer({ min: 1, max: 600 }), kind: fc.constantFrom('pattern', 'byte', 'text') , seed: fc.nat(255) }), { maxLength: 12 }),
  })
  .map(({ sectors, runs }) => {
    const bytes = new Uint8Array(sectors * 512);
    for (const r of runs) {
      const start = Math.floor(r.at * sectors) * 512;
      const part = bytes.subarray(start, Math.min(bytes.length, start + r.sectors * 512));
      for (let i = 0; i < part.length; i++) {
        part[i] = r.kind === 'byte' ? r.seed || 1 : r.kind === 'text' ? 0x61 + ((i + r.seed) % 26) : (i * 31 + r.seed + (i >> 9)) & 0xff;
      }
    }
    return bytes;
  });

/** Output formats and options the writers take; each image made by one is read back through its driver. */
const TARGETS: [string, Record<string, string>, boolean][] = [
  ['raw', {}, false],
  ['qcow2', { cluster_size: '4096' }, false],
  ['qcow2', { cluster_size: '65536', extended_l2: 'on' }, false],
  ['qcow2', { cluster_size: '4096' }, true],
  ['qed', { cluster_size: '4096', table_size: '2' }, false],
  ['vdi', {}, false],
  ['vpc', {}, false],
  ['vhdx', { block_size: '1M' }, false],
  ['vmdk', {}, false],
  ['vmdk', { subformat: 'streamOptimized' }, false],
];

describe('images the writers make from random content', () => {
  it.each(TARGETS.map(([fmt, opts, c]) => [`${fmt} ${JSON.stringify(opts)}${c ? ' -c' : ''}`, fmt, opts, c] as const))('%s', async (_label, fmt, opts, compress) => {
    await fc.assert(
      fc.asyncProperty(contentArb, async (content) => {
        const files = new Map<string, ByteSource>([['src.raw', new MemorySource('src.raw', content)]]);
        const opener = new FileSetOpener(files);
        const ws: Workspace = { opener, open: async (n) => files.get(n) ?? opener.open(n, new MemorySource('', new Uint8Array()), 'image') };
        const name = `out.${fmt}`;
        await new EngineApi(ws).convert(
          { name: 'src.raw', format: 'raw', outFormat: fmt, options: new Map(Object.entries(opts)), compress },
          { name, sink: memorySink(name, files), openSink: async (n) => memorySink(n, files), compressor: testCompressor },
        );
        const out = files.get(name)!;
        // The opener knows only the files written so far; extents and the like are among them.
        const image = await openImage(out, { opener: new FileSetOpener(files), format: fmt });
        expect(image.size).toBeGreaterThanOrEqual(content.length);
        const runs = await walk(image.layers[0]!, name);
        for (const m of runs) if (m.kind === 'compressed') await decodeBounded(image.layers[0]!, m.unit);
        const read = await new ImageReader(image).read(0, new Uint8Array(content.length));
        expect(Buffer.compare(read, content)).toBe(0);
        const promise = new Uint8Array(content.length);
        await promised(image.layers, 0, 0, promise);
        expect(Buffer.compare(promise, content)).toBe(0);
      }),
      { numRuns: 6 },
    );
  });
});

// ---------------------------------------------------------------------------

describe('a compressed cluster never inflates past its bound', () => {
  const MiB = 1024 * 1024;
  let dir: string;
  let bomb: Uint8Array;
  let qemuRead: Uint8Array;
  const ok = (label: string, r: ReturnType<typeof run>) => expect(r.status, describeRun(label, r)).toBe(0);

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vdisk-props-'));
    // One cluster of half noise: zlib packs it into about half a cluster, room for the bomb below.
    const guest = new Uint8Array(MiB);
    guest.set(randomBytes(32768));
    writeFileSync(join(dir, 'src.raw'), guest);
    ok('qemu-img convert', qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', 'src.raw', 'c.qcow2'], { cwd: dir }));
    bomb = new Uint8Array(readFileSync(join(dir, 'c.qcow2')));
    return () => rmSync(dir, { recursive: true, force: true });
  });

  /** The bomb: the first compressed cluster's bytes replaced by 16 MiB of 'a' deflated (256 clusters' worth). */
  async function plantBomb(): Promise<{ layer: Layer; unit: CompressedUnit }> {
    const layer = await openLayer(new MemorySource('c.qcow2', bomb), nodeOpener);
    const m = await layer.getMapping(0, 65536);
    expect(m.kind).toBe('compressed');
    const unit = (m as { unit: CompressedUnit }).unit;
    const stream = deflateRawSync(new Uint8Array(16 * MiB).fill(0x61), { level: 9 });
    expect(stream.length).toBeLessThanOrEqual(unit.hostLength);
    bomb.set(stream, unit.hostOffset);
    writeFileSync(join(dir, 'bomb.qcow2'), bomb);
    ok('qemu-img convert', qemuImg(['convert', '-O', 'raw', 'bomb.qcow2', 'bomb.raw'], { cwd: dir }));
    qemuRead = new Uint8Array(readFileSync(join(dir, 'bomb.raw')));
    return { layer: await openLayer(new MemorySource('bomb.qcow2', bomb), nodeOpener), unit };
  }

  it('decodes a bomb into exactly one cluster, as qemu-img reads it, with either decoder', async () => {
    const { layer, unit } = await plantBomb();
    const check = async () => {
      const out = await decodeBounded(layer, unit);
      expect(out.every((b) => b === 0x61)).toBe(true);
      const image = await openImage(new MemorySource('bomb.qcow2', bomb), { opener: nodeOpener });
      const all = await new ImageReader(image).read(0, new Uint8Array(image.size));
      expect(Buffer.compare(all, qemuRead)).toBe(0);
    };
    await check();
    await loadWasmInflate(readFileSync('build/wasm/inflate-simd.wasm'), readFileSync('build/wasm/inflate-scalar.wasm'));
    await check();
  });

  it('refuses, with a typed error, a stream that ends before the cluster is full', async () => {
    const { unit } = await plantBomb();
    const short = bomb.slice();
    short.fill(0, unit.hostOffset, unit.hostOffset + unit.hostLength);
    short.set(deflateRawSync(new Uint8Array(1000).fill(0x62)), unit.hostOffset);
    const image = await openImage(new MemorySource('short.qcow2', short), { opener: nodeOpener });
    await expect(new ImageReader(image).read(0, new Uint8Array(65536))).rejects.toThrow(VDiskError);
  });
});

// ---------------------------------------------------------------------------

/** One pure parser, fed what its driver would feed it: `length` bytes (or any length when `anyLength`). */
interface Parser {
  name: string;
  /** Bytes to mutate: the structure as a real image holds it, or zeros where no fixture has one. */
  seed: () => Uint8Array;
  /** The seed is a real structure, which must parse. */
  real: boolean;
  length: number;
  anyLength?: boolean;
  parse: (bytes: Uint8Array) => unknown;
}

/** `length` bytes of a fixture at `offset`, zero-padded past its end, as a byte source reads them. */
function fileBytes(file: string, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const fd = openSync(fixturePath(file), 'r');
  try {
    readSync(fd, out, 0, length, offset);
  } finally {
    closeSync(fd);
  }
  return out;
}
const zeros = (n: number) => () => new Uint8Array(n);

const F = 'fuzz.img';
const PARSERS: Parser[] = [
  {
    name: 'qcow2 header and backing name',
    seed: () => fileBytes('chain3/l2.qcow2', 0, 65536),
    real: true,
    length: 65536,
    anyLength: true,
    parse: (b) => qcow2.parseBackingName(b, qcow2.parseHeader(b, F), F),
  },
  {
    name: 'qcow2 snapshot table entry',
    seed: () => fileBytes('snapshots/snap-v3.qcow2', qcow2.parseHeader(fileBytes('snapshots/snap-v3.qcow2', 0, 4096), F).snapshotsOffset, 4096),
    real: true,
    length: 4096,
    anyLength: true,
    parse: (b) => qcow2.parseSnapshotEntry(b, 0, F, 0),
  },
  { name: 'qcow header', seed: () => fileBytes('qcow/over-raw.qcow', 0, 512), real: true, length: 512, parse: (b) => [qcow.parseHeader(b, F), qcow.parseBackingName(b.subarray(48, 112))] },
  { name: 'qed header', seed: () => fileBytes('qed/over-raw.qed', 0, 4096), real: true, length: 4096, parse: (b) => [qed.parseHeader(b, 1 << 30, F), qed.parseBackingName(b.subarray(64, 128))] },
  { name: 'vdi header', seed: () => fileBytes('vdi/dynamic.vdi', 0, 512), real: true, length: 512, parse: (b) => vdi.parseHeader(b, F) },
  { name: 'parallels header', seed: () => fileBytes('parallels/basic.prl', 0, 64), real: true, length: 64, parse: (b) => parallels.parseHeader(b, F) },
  { name: 'parallels format extension', seed: zeros(4096), real: false, length: 4096, parse: (b) => parallels.checkExtension(b, F, 0, 2048) },
  {
    name: 'vmdk sparse header and geometry',
    seed: () => fileBytes('vmdk/sparse.vmdk', 0, 512),
    real: true,
    length: 512,
    anyLength: true,
    parse: (b) => vmdk.sparseGeometry(vmdk.parseSparseHeader(b, F), 1 << 30, F, 0),
  },
  {
    name: 'vmdk footer',
    // A footer marker, the stream-optimized header as the footer repeats it, the end-of-stream marker.
    seed: () => {
      const b = new Uint8Array(1536);
      b[12] = 3;
      b.set(fileBytes('vmdk/stream.vmdk', 0, 512), 512);
      return b;
    },
    real: true,
    length: 1536,
    parse: (b) => vmdk.sparseGeometry(vmdk.parseFooter(b, F, 0), 1 << 30, F, 0),
  },
  { name: 'vmdk COWD header', seed: zeros(512), real: false, length: 512, parse: (b) => vmdk.cowdGeometry(vmdk.parseCowdHeader(b, F), F) },
  { name: 'vmdk seSparse header', seed: zeros(512), real: false, length: 512, parse: (b) => sesparse.seSparseGeometry(sesparse.parseConstHeader(b, F), F) },
  {
    name: 'vmdk descriptor',
    seed: () => fileBytes('vmdk/split-flat.vmdk', 0, 1024),
    real: true,
    length: 1024,
    anyLength: true,
    // Its own error, which the driver turns into an ImageFormatError naming the file.
    parse: (b) => {
      try {
        return parseExtentLines(new TextDecoder('latin1').decode(b));
      } catch (e) {
        if (e instanceof DescriptorError) return e;
        throw e;
      }
    },
  },
  { name: 'vpc footer', seed: () => fileBytes('vpc/dynamic-8m.vhd', 0, 512), real: true, length: 512, parse: (b) => vpc.virtualSectors(vpc.parseFooter(b, F, 0), F, 0) },
  {
    name: 'vpc dynamic header and parent locator',
    seed: () => fileBytes('vpc/dynamic-8m.vhd', 512, 1024),
    real: true,
    length: 1024,
    parse: (b) => {
      const h = vpc.parseDynHeader(b, F, 512);
      const loc = vpc.preferredLocator(h);
      return loc ? vpc.decodeLocator(loc, b.subarray(0, Math.min(b.length, loc.dataLength))) : h;
    },
  },
  {
    name: 'vhdx headers',
    seed: () => fileBytes('vhdx/dynamic.vhdx', 64 * 1024, 4096),
    real: true,
    length: 4096,
    parse: (b) => vhdx.currentHeader(vhdx.checkHeader(b, 0), vhdx.checkHeader(b, 1), F),
  },
  {
    name: 'vhdx region table',
    seed: () => fileBytes('vhdx/dynamic.vhdx', 192 * 1024, 65536),
    real: true,
    length: 65536,
    parse: (b) => [vhdx.checkRegionTable(b), vhdx.parseRegionTable(b, F, 192 * 1024)],
  },
  {
    name: 'vhdx metadata table and items',
    seed: () => fileBytes('vhdx/dynamic.vhdx', 3 * 1024 * 1024, 65536),
    real: true,
    length: 65536,
    parse: (b) => {
      const items = vhdx.parseMetadataTable(b, F, 0, 1024 * 1024);
      // Items lie after the table; each parser gets the bytes at the item's offset, wrapped into the sample.
      const item = (off: number) => b.subarray(off % 65536, (off % 65536) + 64);
      return [...items.values()].map((i) => {
        const bytes = item(i.fileOffset);
        const each = [
          () => vhdx.parseFileParameters(bytes, F, 0),
          () => vhdx.parseVirtualDiskSize(bytes, F, 0),
          () => vhdx.parseSectorSize(bytes, F, 0, 'logical sector size'),
          () => vhdx.parseParentLocator(bytes, F, 0),
        ];
        return each.map((parse) => {
          try {
            return parse();
          } catch (e) {
            if (e instanceof VDiskError) return e;
            throw e;
          }
        });
      });
    },
  },
  {
    name: 'vhdx log entry header and descriptors',
    seed: zeros(4096),
    real: false,
    length: 4096,
    parse: (b) => [vhdxLog.parseEntryHeader(b), ...Array.from({ length: 126 }, (_, i) => vhdxLog.parseDescriptor(b, 64 + 32 * i))],
  },
];

/** Field values that break parsers: zero, all ones, the top bit, one. */
type Edit = { at: number; width: 1 | 2 | 4 | 8; value: 'zero' | 'ones' | 'top' | 'one' | 'flip'; little: boolean };

function applyEdit(b: Uint8Array, e: Edit): void {
  for (let k = 0; k < e.width && e.at + k < b.length; k++) {
    // Byte k from the least significant end, in the field's byte order.
    const i = e.at + (e.little ? k : e.width - 1 - k);
    if (i >= b.length) continue;
    if (e.value === 'zero') b[i] = 0;
    else if (e.value === 'ones') b[i] = 0xff;
    else if (e.value === 'top') b[i] = k === e.width - 1 ? 0x80 : 0;
    else if (e.value === 'one') b[i] = k === 0 ? 1 : 0;
    else b[i]! ^= 1 << (k % 8);
  }
}

/** A mutant of the seed (fields set to edge values, bits flipped), random bytes, or a cut seed. */
function bytesArb(p: Parser): fc.Arbitrary<Uint8Array> {
  const seed = p.seed();
  const edit = fc.record({
    at: fc.oneof(fc.nat(Math.min(p.length, 512) - 1), fc.nat(p.length - 1)),
    width: fc.constantFrom<Edit['width']>(1, 2, 4, 8),
    value: fc.constantFrom<Edit['value']>('zero', 'ones', 'top', 'one', 'flip'),
    little: fc.boolean(),
  });
  const mutated = fc.array(edit, { minLength: 1, maxLength: 8 }).map((edits) => {
    const b = seed.slice();
    for (const e of edits) applyEdit(b, e);
    return b;
  });
  // Random bytes at the front (generating 64 KiB a byte at a time is slow), zeros after, as a short file reads.
  const random = fc.uint8Array({ maxLength: Math.min(p.length, 4096) }).map((head) => {
    const b = new Uint8Array(p.anyLength ? head.length : p.length);
    b.set(head);
    return b;
  });
  if (!p.anyLength) return fc.oneof(mutated, random);
  return fc.oneof(mutated, random, fc.nat(p.length).map((n) => seed.slice(0, n)));
}

describe('header parsers answer any bytes with a struct or a typed error', () => {
  it.each(PARSERS.map((p) => [p.name, p] as const))('%s', (_name, p) => {
    if (p.real) expect(() => p.parse(p.seed()), 'the real structure parses').not.toThrow();
    fc.assert(
      fc.property(bytesArb(p), (bytes) => {
        try {
          p.parse(bytes);
        } catch (e) {
          if (!(e instanceof VDiskError)) throw e;
        }
      }),
      { numRuns: 400 },
    );
  });
});
