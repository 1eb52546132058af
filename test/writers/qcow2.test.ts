// The qcow2 writer (convert -O qcow2) and qcow2 measure. Every source goes
// through `vdisk convert` with each option set and is held to qemu-img's own
// output for the same conversion (check, compare, info, allocated bytes).
// Compressed output is also made in process with a 4 KiB-window deflate, as
// the pipeline's codec promises; a random sequence of writes, zero units and
// compressed units at the smallest clusters and refcount widths exercises
// the refcount blocks, the refcount table and shared compressed clusters
// across their boundaries. measure is compared with qemu-img measure.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { describeRun, qemuImg, run, vdisk, type MapJsonEntry } from '../helpers/run.ts';
import { allocated, checkParity, makeSources, ok, OVER_BACKING, qemuMessage, text, type Source } from './parity.ts';
import { NodeFileSink, nodeWorkspace } from '../../cli/node-io.ts';
import { openImage, type Image } from '../../engine/image.ts';
import { convertImage } from '../../engine/ops/convert.ts';
import type { Compressor } from '../../engine/codecs/compress.ts';
import { ImageReader } from '../../engine/ops/read.ts';
import { MemorySource } from '../../engine/io/source.ts';
import { FileSetOpener } from '../../engine/io/opener.ts';
import { qcow2Writer } from '../../engine/drivers/qcow2/writer.ts';
import { qcow2Measurer } from '../../engine/drivers/qcow2/measure.ts';
import type { MeasureOptions } from '../../engine/writer.ts';
import { dataRanges } from '../../engine/ops/measure.ts';
import type { ByteSink } from '../../engine/io/sink.ts';
import type { DataRange } from '../../engine/writer.ts';

let dir: string;
let sources: Source[];
const sizes: string[] = [];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-wqcow2-'));
  sources = makeSources(dir);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  if (process.env.VDISK_REPORT_SIZES) console.log(sizes.join('\n'));
});

const tagOf = (s: string) => s.replace(/[^a-z0-9]+/gi, '_');
const source = (name: string) => sources.find((s) => s.name === name)!;

/** qemu's own compressor parameters: raw deflate, 4 KiB window. */
const deflate4k: Compressor = {
  async compress(data) {
    return deflateRawSync(data, { level: 6, windowBits: 12, memLevel: 9 });
  },
  close() {},
};

async function convertInProcess(src: Source, out: string, options: Record<string, string>, compress: boolean): Promise<void> {
  const ws = nodeWorkspace;
  const image = await openImage(await ws.open(join(dir, src.file)), { opener: ws.opener, format: src.format });
  let backing: Image | undefined;
  if (src.backing) backing = await openImage(await ws.open(join(dir, src.backing.file)), { opener: ws.opener, format: src.backing.format });
  const sink = await NodeFileSink.create(join(dir, out));
  const writer = await qcow2Writer.create(
    sink,
    { size: image.size, options: new Map(Object.entries(options)), compress, backing: src.backing && { name: src.backing.file, format: src.backing.format } },
    () => Promise.reject(new Error('no other files')),
  );
  await convertImage(image, writer, { backing, compressor: deflate4k });
}

/** qemu-img check's JSON for a file that must be clean. */
function checkClean(file: string): void {
  const r = qemuImg(['check', '--output=json', '-f', 'qcow2', file], { cwd: dir });
  expect(r.status, describeRun('qemu-img check ' + file, r)).toBe(0);
  const report = JSON.parse(r.stdout) as Record<string, unknown>;
  expect(report['leaks'] ?? 0).toBe(0);
  expect(report['corruptions'] ?? 0).toBe(0);
  expect(report['check-errors']).toBe(0);
}

const FORMAT_SPECIFIC_CASES: [string, string][] = [
  ['default', ''],
  ['compat 0.10', 'compat=0.10'],
];

const OPTION_CASES: [string, string][] = [
  ['512-byte clusters', 'cluster_size=512'],
  ['4 KiB clusters', 'cluster_size=4k'],
  ['2 MiB clusters', 'cluster_size=2M'],
  ['extended L2', 'extended_l2=on'],
  ['extended L2, 16 KiB clusters', 'extended_l2=on,cluster_size=16k'],
  ['1-bit refcounts', 'refcount_bits=1'],
  ['8-bit refcounts', 'refcount_bits=8'],
  ['64-bit refcounts, 512-byte clusters', 'refcount_bits=64,cluster_size=512'],
  ['lazy refcounts', 'lazy_refcounts=on'],
  ['zstd compression type', 'compression_type=zstd'],
  ['preallocated metadata', 'preallocation=metadata'],
  ['preallocated metadata, extended L2', 'preallocation=metadata,extended_l2=on'],
  ['compat v2 spelled v2', 'compat=v2'],
];

const BACKING_CASES: [string, string][] = [
  ['default', ''],
  ['compat 0.10', 'compat=0.10'],
  ['extended L2', 'extended_l2=on'],
  ['extended L2 with preallocated metadata', 'extended_l2=on,preallocation=metadata'],
  ['512-byte clusters', 'cluster_size=512'],
];

async function parity(src: Source, label: string, options: string): Promise<void> {
  const p = await checkParity({ dir, source: src, format: 'qcow2', options, checkable: true, tag: tagOf(`${src.name}-${label}`) });
  checkClean(p.ours);
  sizes.push(`${src.name} / ${label}: ours ${p.oursBytes} qemu-img ${p.theirsBytes}`);
}

describe.concurrent('every source, default and compat=0.10', () => {
  for (const [label, options] of FORMAT_SPECIFIC_CASES) {
    for (const name of ['raw', 'qcow2', 'compressed qcow2', 'backing chain', 'streamOptimized vmdk', 'vhdx', 'vdi']) {
      it(`${name}, ${label}`, () => parity(source(name), label, options));
    }
  }
});

describe.concurrent('option sets', () => {
  for (const [label, options] of OPTION_CASES) {
    it(`raw, ${label}`, () => parity(source('raw'), label, options));
    it(`backing chain, ${label}`, () => parity(source('backing chain'), label, options));
  }
});

describe('over a backing file (-B)', () => {
  for (const [label, options] of BACKING_CASES) {
    it(label, () => parity(OVER_BACKING, label, options));
  }
  it('-o backing_file/backing_fmt say the same as -B/-F', () => {
    ok('vdisk', vdisk(['convert', '-O', 'qcow2', '-o', 'backing_file=base.qcow2,backing_fmt=qcow2', 'top.qcow2', 'bo.qcow2'], { cwd: dir }));
    checkClean('bo.qcow2');
    const cmp = qemuImg(['compare', 'top.qcow2', 'bo.qcow2'], { cwd: dir });
    expect(cmp.status, describeRun('compare', cmp)).toBe(0);
    const info = JSON.parse(ok('info', qemuImg(['info', '--output=json', 'bo.qcow2'], { cwd: dir }))) as Record<string, unknown>;
    expect(info['backing-filename']).toBe('base.qcow2');
    expect(info['backing-filename-format']).toBe('qcow2');
  });
});

describe('host offsets past 4 GiB (preallocated metadata of a 6 GiB disk)', () => {
  beforeAll(() => {
    ok('create', qemuImg(['create', '-q', '-f', 'qcow2', 'six.qcow2', '6G'], { cwd: dir }));
    ok('qemu-io', run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x33 1G 1M', '-c', 'write -P 0x34 6442385408 64k', 'six.qcow2'], { cwd: dir }));
  });
  for (const o of ['preallocation=metadata', 'preallocation=metadata,extended_l2=on']) {
    it(o, () => {
      ok('vdisk convert', vdisk(['convert', '-O', 'qcow2', '-o', o, 'six.qcow2', 'six.out.qcow2'], { cwd: dir }));
      checkClean('six.out.qcow2');
      const cmp = qemuImg(['compare', 'six.qcow2', 'six.out.qcow2'], { cwd: dir });
      expect(cmp.status, describeRun('compare', cmp)).toBe(0);
      rmSync(join(dir, 'six.out.qcow2'));
    });
  }
});

describe('compressed clusters (-c), 4 KiB-window deflate', () => {
  const cases: [string, Record<string, string>][] = [
    ['default', {}],
    ['512-byte clusters', { cluster_size: '512' }],
    ['2 MiB clusters', { cluster_size: '2M' }],
    ['1-bit refcounts', { refcount_bits: '1' }],
    ['2-bit refcounts', { refcount_bits: '2' }],
    ['64-bit refcounts, 512-byte clusters', { refcount_bits: '64', cluster_size: '512' }],
    ['compat 0.10', { compat: '0.10' }],
    ['extended L2', { extended_l2: 'on' }],
  ];
  for (const [label, options] of cases) {
    for (const name of ['raw', 'backing chain', 'compressed qcow2']) {
      it(`${name}, ${label}`, async () => {
        const src = source(name);
        const tag = tagOf(`c-${name}-${label}`);
        await convertInProcess(src, `${tag}.ours.qcow2`, options, true);
        const o = Object.entries(options).map(([k, v]) => `${k}=${v}`).join(',');
        ok('qemu-img convert -c', qemuImg(['convert', '-c', '-O', 'qcow2', ...(o ? ['-o', o] : []), src.file, `${tag}.qemu.qcow2`], { cwd: dir }));
        checkClean(`${tag}.ours.qcow2`);
        const cmp = qemuImg(['compare', '-f', src.format, '-F', 'qcow2', src.file, `${tag}.ours.qcow2`], { cwd: dir });
        expect(cmp.status, describeRun('qemu-img compare', cmp)).toBe(0);
        ok('vdisk compare', vdisk(['compare', '-f', src.format, '-F', 'qcow2', src.file, `${tag}.ours.qcow2`], { cwd: dir }));
        const info = (f: string) => {
          const i = JSON.parse(ok('info', qemuImg(['info', '--output=json', f], { cwd: dir }))) as Record<string, unknown>;
          delete i['actual-size'];
          delete i['filename'];
          return i;
        };
        expect(info(`${tag}.ours.qcow2`)).toEqual(info(`${tag}.qemu.qcow2`));
        const ours = allocated(join(dir, `${tag}.ours.qcow2`));
        const theirs = allocated(join(dir, `${tag}.qemu.qcow2`));
        sizes.push(`-c ${name} / ${label}: ours ${ours} qemu-img ${theirs}`);
        expect(ours).toBeLessThanOrEqual(theirs * 1.05);
        // About as many clusters end up compressed: the pipeline keeps lone
        // zero units shorter than -S, where qemu-img drops every zero cluster
        // under -c.
        const compressedClusters = (f: string) => {
          const r = JSON.parse(ok('check', qemuImg(['check', '--output=json', f], { cwd: dir }))) as Record<string, number>;
          return r['compressed-clusters']!;
        };
        const theirsCount = compressedClusters(`${tag}.qemu.qcow2`);
        expect(compressedClusters(`${tag}.ours.qcow2`)).toBeGreaterThanOrEqual(theirsCount - 1);
        expect(compressedClusters(`${tag}.ours.qcow2`)).toBeLessThanOrEqual(theirsCount * 1.01 + 1);
      });
    }
  }

  it('through the command, with its parallel compressor', () => {
    for (const o of ['', 'cluster_size=512,refcount_bits=2', 'extended_l2=on']) {
      ok('vdisk convert -c', vdisk(['convert', '-c', '-O', 'qcow2', ...(o ? ['-o', o] : []), 'top.qcow2', 'cli-c.qcow2'], { cwd: dir }));
      checkClean('cli-c.qcow2');
      const cmp = qemuImg(['compare', 'top.qcow2', 'cli-c.qcow2'], { cwd: dir });
      expect(cmp.status, describeRun('compare', cmp)).toBe(0);
      const r = JSON.parse(ok('check', qemuImg(['check', '--output=json', 'cli-c.qcow2'], { cwd: dir }))) as Record<string, number>;
      expect(r['compressed-clusters']).toBeGreaterThan(0);
      rmSync(join(dir, 'cli-c.qcow2'));
    }
  });

  it('a cluster that does not shrink is stored as it is, as qemu-img stores it', () => {
    // Two clusters of random bytes between two of text.
    writeFileSync(join(dir, 'mixed.raw'), Buffer.concat([text(65536), randomBytes(2 * 65536), text(65536)]));
    ok('vdisk convert -c', vdisk(['convert', '-c', '-f', 'raw', '-O', 'qcow2', 'mixed.raw', 'mixed.ours.qcow2'], { cwd: dir }));
    ok('qemu-img convert -c', qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', 'mixed.raw', 'mixed.qemu.qcow2'], { cwd: dir }));
    checkClean('mixed.ours.qcow2');
    const map = (f: string) => JSON.parse(ok('map', qemuImg(['map', '--output=json', f], { cwd: dir }))) as MapJsonEntry[];
    // Only clusters stored as they are have a host offset.
    const stored = (f: string) => map(f).filter((e) => e.offset !== undefined).map((e) => [e.start, e.length]);
    expect(stored('mixed.ours.qcow2')).toEqual([[65536, 2 * 65536]]);
    expect(stored('mixed.ours.qcow2')).toEqual(stored('mixed.qemu.qcow2'));
  });

  it('a short last cluster is compressed padded with zeros, as qemu-img stores it', () => {
    ok('create', qemuImg(['create', '-q', '-f', 'raw', 'short.raw', '98k'], { cwd: dir }));
    ok('qemu-io', run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x41 0 98k', 'short.raw'], { cwd: dir }));
    ok('vdisk convert -c', vdisk(['convert', '-c', '-O', 'qcow2', 'short.raw', 'short.ours.qcow2'], { cwd: dir }));
    ok('qemu-img convert -c', qemuImg(['convert', '-c', '-O', 'qcow2', 'short.raw', 'short.qemu.qcow2'], { cwd: dir }));
    checkClean('short.ours.qcow2');
    expect(qemuImg(['compare', 'short.raw', 'short.ours.qcow2'], { cwd: dir }).status).toBe(0);
    // Compressed ranges show no host offset: the maps agree only if both clusters are compressed in both.
    const map = (f: string) => ok('map', qemuImg(['map', '--output=json', f], { cwd: dir }));
    expect(map('short.ours.qcow2')).toBe(map('short.qemu.qcow2'));
    const check = (f: string) => JSON.parse(ok('check', qemuImg(['check', '--output=json', f], { cwd: dir }))) as Record<string, number>;
    expect(check('short.ours.qcow2')['compressed-clusters']).toBe(check('short.qemu.qcow2')['compressed-clusters']);
  });

  it('zstd compression is refused with a clear message, before anything is written', () => {
    const r = vdisk(['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', 'src.raw', 'zstd.qcow2'], { cwd: dir });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/zstd/);
    expect(() => readFileSync(join(dir, 'zstd.qcow2'))).toThrow();
  });
});

// ---------------------------------------------------------------------------
// Random unit sequences straight into the writer

/** An in-memory sink. */
class MemorySink implements ByteSink {
  bytes = new Uint8Array(0);
  committed = false;
  constructor(readonly name: string) {}
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.grow(offset + data.length);
    this.bytes.set(data, offset);
  }
  async commit(length: number): Promise<void> {
    this.grow(length);
    this.bytes = this.bytes.subarray(0, length);
    this.committed = true;
  }
  async abort(): Promise<void> {
    this.bytes = new Uint8Array(0);
  }
  private grow(n: number): void {
    if (n <= this.bytes.length) return;
    const next = new Uint8Array(Math.max(n, this.bytes.length * 2));
    next.set(this.bytes);
    this.bytes = next;
  }
}

type Op = { kind: 'data' | 'zero' | 'compressed' | 'text' | 'skip'; seed: number };

function unitBytes(op: Op, length: number): Uint8Array {
  const out = new Uint8Array(length);
  if (op.kind === 'text' || op.kind === 'compressed') {
    const line = new TextEncoder().encode(`unit ${op.seed} says hello ${op.seed * 7}\n`);
    for (let i = 0; i < length; i++) out[i] = line[i % line.length]!;
  } else {
    let x = op.seed || 1;
    for (let i = 0; i < length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = x & 0xff;
    }
  }
  return out;
}

describe('random unit sequences at the smallest clusters and refcount widths', () => {
  const opSet = fc.record({ kind: fc.constantFrom<Op['kind']>('data', 'zero', 'compressed', 'text', 'skip'), seed: fc.integer({ min: 1, max: 1e9 }) });
  it('pass qemu-img check and read back as written, in vdisk and qemu-img', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          clusterBits: fc.constantFrom(9, 10, 14),
          refcountBits: fc.constantFrom(1, 2, 4, 16, 64),
          extendedL2: fc.boolean(),
          compat: fc.constantFrom('0.10', '1.1'),
          compress: fc.boolean(),
          ops: fc.array(opSet, { minLength: 1, maxLength: 400 }),
          shortTail: fc.integer({ min: 0, max: 3 }),
        }),
        async (c) => {
          const cs = 2 ** c.clusterBits;
          const extL2 = c.extendedL2 && c.clusterBits >= 14 && c.compat === '1.1';
          const refcountBits = c.compat === '0.10' ? 16 : c.refcountBits;
          const size = c.ops.length * cs - Math.min(c.shortTail * 512, cs - 512);
          const options = new Map([
            ['cluster_size', String(cs)],
            ['refcount_bits', String(refcountBits)],
            ['extended_l2', extL2 ? 'on' : 'off'],
            ['compat', c.compat],
          ]);
          const sink = new MemorySink('r.qcow2');
          // Zero units only make sense over a backing file; here they are recorded as zero over one that reads as 0x55.
          const backing = { name: 'r-base.raw', format: 'raw' };
          const w = await qcow2Writer.create(sink, { size, options, compress: c.compress, backing }, () => Promise.reject(new Error('none')));
          const expected = new Uint8Array(size).fill(0x55);
          const unit = w.blockSize;
          for (let i = 0; i < c.ops.length; i++) {
            const op = c.ops[i]!;
            for (let off = i * cs; off < Math.min(size, (i + 1) * cs); off += unit) {
              const len = Math.min(unit, size - off);
              if (op.kind === 'skip') continue;
              if (op.kind === 'zero') {
                await w.writeZero(off, len);
                expected.fill(0, off, off + len);
                continue;
              }
              const data = unitBytes({ ...op, seed: op.seed + off }, len);
              expected.set(data, off);
              // As the pipeline does: a short last unit is compressed padded to a whole one.
              const whole = w.padsLastUnit && len < unit ? Buffer.concat([data, new Uint8Array(unit - len)]) : data;
              if (w.codec && op.kind !== 'data') await w.writeCompressed(off, deflateRawSync(whole, { windowBits: 12 }), data);
              else await w.write(off, data);
            }
          }
          await w.finish();
          expect(sink.committed).toBe(true);
          const base = new Uint8Array(size).fill(0x55);
          const opener = new FileSetOpener(new Map([['r-base.raw', new MemorySource('r-base.raw', base)]]));
          const image = await openImage(new MemorySource('r.qcow2', sink.bytes), { opener });
          const got = await new ImageReader(image).read(0, new Uint8Array(size));
          expect(Buffer.compare(got, expected)).toBe(0);
          // qemu-img on the same bytes.
          writeFileSync(join(dir, 'r.qcow2'), sink.bytes);
          writeFileSync(join(dir, 'r-base.raw'), base);
          writeFileSync(join(dir, 'r-expected.raw'), expected);
          checkClean('r.qcow2');
          const cmp = qemuImg(['compare', '-f', 'raw', '-F', 'qcow2', 'r-expected.raw', 'r.qcow2'], { cwd: dir });
          expect(cmp.status, describeRun('compare', cmp)).toBe(0);
        },
      ),
      { numRuns: 40 },
    );
  });
});

// ---------------------------------------------------------------------------
// Option errors: qemu-img's words. qemu-img puts "FILE: error while
// converting qcow2: " before what the driver's create says; that frame is the
// command's, so only the driver's words are compared here.

const createMessage = (stderr: string) => qemuMessage(stderr).replace(/^error while converting qcow2: /, '');

describe('option errors', () => {
  const bad = [
    'cluster_size=1000',
    'cluster_size=4M',
    'compat=1.2',
    'refcount_bits=3',
    'refcount_bits=128',
    'refcount_bits=8,compat=0.10',
    'lazy_refcounts=on,compat=0.10',
    'lazy_refcounts=maybe',
    'extended_l2=on,compat=0.10',
    'extended_l2=on,cluster_size=8k',
    'compression_type=zstd,compat=0.10',
    'compression_type=lz4',
    'preallocation=bogus',
  ];
  for (const o of bad) {
    it(o, () => {
      const q = qemuImg(['convert', '-O', 'qcow2', '-o', o, 'src.raw', 'bad.q.qcow2'], { cwd: dir });
      const v = vdisk(['convert', '-O', 'qcow2', '-o', o, 'src.raw', 'bad.v.qcow2'], { cwd: dir });
      expect(q.status).toBe(1);
      expect(v.status).toBe(1);
      expect(createMessage(v.stderr.replace(/^vdisk/, 'qemu-img'))).toBe(createMessage(q.stderr));
      expect(() => readFileSync(join(dir, 'bad.v.qcow2'))).toThrow();
    });
  }
  it('a backing file name that does not fit in the header cluster', () => {
    const name = './'.repeat(220) + 'base.qcow2';
    const args = ['convert', '-O', 'qcow2', '-o', 'cluster_size=512', '-B', name, '-F', 'qcow2', 'top.qcow2', 'bad.qcow2'];
    const q = qemuImg(args, { cwd: dir });
    const v = vdisk(args, { cwd: dir });
    expect(q.status).toBe(1);
    expect(v.status).toBe(1);
    expect(createMessage(v.stderr.replace(/^vdisk/, 'qemu-img'))).toBe(createMessage(q.stderr));
    // One that just fits works, in the 512-byte cluster without the feature name table, as qemu-img writes it.
    const fits = ['convert', '-O', 'qcow2', '-o', 'cluster_size=512', '-B', './'.repeat(180) + 'base.qcow2', '-F', 'qcow2', 'top.qcow2', 'fits.qcow2'];
    ok('vdisk', vdisk(fits, { cwd: dir }));
    checkClean('fits.qcow2');
    expect(qemuImg(['compare', 'top.qcow2', 'fits.qcow2'], { cwd: dir }).status).toBe(0);
  });
  it('compression with preallocation', () => {
    const q = qemuImg(['convert', '-c', '-O', 'qcow2', '-o', 'preallocation=metadata', 'src.raw', 'bad.q.qcow2'], { cwd: dir });
    const v = vdisk(['convert', '-c', '-O', 'qcow2', '-o', 'preallocation=metadata', 'src.raw', 'bad.v.qcow2'], { cwd: dir });
    expect(q.status).toBe(1);
    expect(v.status).toBe(1);
    expect(qemuMessage(v.stderr.replace(/^vdisk/, 'qemu-img'))).toBe(qemuMessage(q.stderr));
  });
  it('a backing file with preallocation needs extended L2 entries', () => {
    const args = ['convert', '-O', 'qcow2', '-B', 'base.qcow2', '-F', 'qcow2', '-o', 'preallocation=metadata', 'top.qcow2', 'bad.qcow2'];
    const q = qemuImg(args, { cwd: dir });
    const v = vdisk(args, { cwd: dir });
    expect(q.status).toBe(1);
    expect(v.status).toBe(1);
    expect(createMessage(v.stderr.replace(/^vdisk/, 'qemu-img'))).toBe(createMessage(q.stderr));
  });
});

// ---------------------------------------------------------------------------
// measure

describe('measure -O qcow2', () => {
  const optionSets = [
    '',
    'cluster_size=512',
    'cluster_size=4k',
    'cluster_size=2M',
    'extended_l2=on',
    'extended_l2=on,cluster_size=16k',
    'extended_l2=on,cluster_size=2M',
    'refcount_bits=1',
    'refcount_bits=64',
    'refcount_bits=64,cluster_size=512',
    'compat=0.10',
    'preallocation=metadata',
    'preallocation=full',
    'preallocation=falloc',
    'lazy_refcounts=on',
    'backing_file=base.qcow2,backing_fmt=qcow2',
  ];
  const qemuMeasure = (args: string[]) => qemuImg(['measure', '--output=json', '-O', 'qcow2', ...args], { cwd: dir });
  const optionMap = (o: string) => new Map(o.split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
  /** Our measure as qemu-img measure --output=json would print it (key order aside). */
  async function ourMeasure(o: string, size: number, image?: Image, format?: string): Promise<Record<string, number>> {
    const opts: MeasureOptions = { size, options: optionMap(o), compress: false, source: format ? { format } : undefined };
    const m = await qcow2Measurer.measure(opts, dataRanges(image));
    return { required: m.required, 'fully-allocated': m.fullyAllocated, ...(m.bitmaps === undefined ? {} : { bitmaps: m.bitmaps }) };
  }
  const sizesToTry = ['0', '512', '1M', '10M', '1G', '100G', '1T', '17T', '300T', String(64 * 1024 * 1024 * 1024 + 512)];
  const parseSize = (t: string) => Number(t.replace(/[MGT]$/, '')) * 1024 ** ({ M: 2, G: 3, T: 4 }[t.slice(-1)] ?? 0);
  // vdisk cannot see host-file holes (a documented exception), so the sparse raw source is measured as a dense copy.
  const measured = () => [...sources.filter((s) => s.name !== 'raw'), { name: 'dense raw', file: 'dense.raw', format: 'raw' }, OVER_BACKING];
  beforeAll(() => ok('cp', run('cp', ['--sparse=never', 'src.raw', 'dense.raw'], { cwd: dir })));

  for (const o of optionSets) {
    it(`--size, ${o || 'default'}`, async () => {
      for (const size of sizesToTry) {
        const q = qemuMeasure([...(o ? ['-o', o] : []), '--size', size]);
        if (q.status === 0) expect(await ourMeasure(o, parseSize(size)), `--size ${size}`).toEqual(JSON.parse(q.stdout));
        else await expect(ourMeasure(o, parseSize(size))).rejects.toThrow(qemuMessage(q.stderr));
      }
    });
    it(`each source, ${o || 'default'}`, async () => {
      for (const s of measured()) {
        const q = JSON.parse(ok('measure', qemuMeasure([...(o ? ['-o', o] : []), '-f', s.format, s.file]))) as Record<string, number>;
        const image = await openImage(await nodeWorkspace.open(join(dir, s.file)), { opener: nodeWorkspace.opener, format: s.format });
        expect(await ourMeasure(o, image.size, image, s.format), s.name).toEqual(q);
      }
    });
  }

  it('vdisk measure prints what the measurer says', () => {
    for (const args of [['--size', '10G'], ['-o', 'cluster_size=4k,refcount_bits=8', '--size', '3G'], ['-f', 'vdi', 'src.vdi'], ['-o', 'compat=0.10', 'top.qcow2']]) {
      const q = JSON.parse(ok('qemu-img measure', qemuMeasure(args))) as Record<string, number>;
      const v = JSON.parse(ok('vdisk measure', vdisk(['measure', '--output=json', '-O', 'qcow2', ...args], { cwd: dir }))) as Record<string, number>;
      expect(v.required, args.join(' ')).toBe(q.required);
      expect(v['fully-allocated'], args.join(' ')).toBe(q['fully-allocated']);
    }
  });

  it('data ranges are counted per cluster touched, once', async () => {
    async function* ranges(): AsyncGenerator<DataRange> {
      yield { start: 0, length: 100 };
      yield { start: 200, length: 100 };
      yield { start: 70000, length: 10 };
      yield { start: 131072, length: 65536 * 2 + 1 };
    }
    async function* none(): AsyncGenerator<DataRange> {}
    const m = await qcow2Measurer.measure({ size: 1 << 20, options: new Map(), compress: false }, ranges());
    const empty = await qcow2Measurer.measure({ size: 1 << 20, options: new Map(), compress: false }, none());
    expect(m.required - empty.required).toBe(65536 * 5);
  });

  it('option errors in measure are worded as qemu-img measure words them', () => {
    for (const o of ['cluster_size=1000', 'compat=1.2', 'compat=v3', 'refcount_bits=3', 'refcount_bits=8,compat=0.10', 'extended_l2=on,cluster_size=8k', 'preallocation=bogus']) {
      const q = qemuImg(['measure', '-O', 'qcow2', '-o', o, '--size', '1G'], { cwd: dir });
      const v = vdisk(['measure', '-O', 'qcow2', '-o', o, '--size', '1G'], { cwd: dir });
      expect(v.status, o).toBe(q.status);
      expect(qemuMessage(v.stderr.replace(/^vdisk/, 'qemu-img')), o).toBe(qemuMessage(q.stderr));
    }
  });
});
