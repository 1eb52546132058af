// The VMDK writer (convert -O vmdk): every source through monolithicSparse,
// streamOptimized and monolithicFlat and through each -o option, checked by
// qemu-img (check, compare, info) against qemu-img's own output for the same
// conversion; monolithicSparse output is byte for byte qemu-img's apart from
// the random CID. Stream-optimized output is walked marker by marker to hold
// it to VMware's stream layout (written front to back, footer, end-of-stream).
// Parent links (-B) are converted in process, where the writer is handed the
// parent's CID.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuImg, vdisk } from '../helpers/run.ts';
import { vmdkWriter, flatExtentName } from '../../engine/drivers/vmdk/writer.ts';
import { geometry } from '../../engine/drivers/vmdk/build.ts';
import * as L from '../../engine/drivers/vmdk/layout.ts';
import type { ByteSink } from '../../engine/io/sink.ts';
import { nodeWorkspace } from '../../cli/node-io.ts';
import { openImage } from '../../engine/image.ts';
import { convertImage } from '../../engine/ops/convert.ts';
import { inlineCompressor } from '../../engine/codecs/compress.ts';
import { ImageReader } from '../../engine/ops/read.ts';
import { MemorySource } from '../../engine/io/source.ts';
import { FileSetOpener } from '../../engine/io/opener.ts';
import { checkOutput, convertBoth, convertInProcess, makeSources, MiB, noise } from './vmdk-vdi-support.ts';
import { allocated, ok, type Source } from './parity.ts';

let dir: string;
let sources: Source[];
const sizes: string[] = [];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-wvmdk-'));
  sources = makeSources(dir);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  if (process.env.VDISK_REPORT_SIZES) console.log(sizes.join('\n'));
});

const read = (path: string) => new Uint8Array(readFileSync(path));
const latin1 = (b: Uint8Array) => Buffer.from(b).toString('latin1');

/** The text descriptor of a file: embedded at sector 1 of a sparse file, or the whole descriptor file; CID masked. */
function descriptor(path: string): string {
  const bytes = read(path);
  const embedded = latin1(bytes.subarray(0, 4)) === 'KDMV';
  const area = embedded ? bytes.subarray(L.SECTOR, 21 * L.SECTOR) : bytes;
  const end = area.indexOf(0);
  return latin1(end < 0 ? area : area.subarray(0, end)).replace(/^CID=[0-9a-f]{1,8}$/m, 'CID=********');
}

/** A sparse file without its embedded descriptor (compared on its own): monolithicSparse output must otherwise be qemu-img's, byte for byte. */
function masked(path: string): Buffer {
  const bytes = Buffer.from(read(path));
  return bytes.fill(0, L.SECTOR, 21 * L.SECTOR);
}

interface StreamWalk {
  grains: number[];
  tables: number;
  directory: number[];
  footer: DataView;
}

/**
 * Walks a stream-optimized file from its first grain to its end-of-stream
 * marker as a streaming reader would, checking VMDK 5.0's rules on the way.
 */
function walkStream(bytes: Uint8Array): StreamWalk {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  expect(v.getUint32(L.H.version, true)).toBe(3);
  expect(v.getUint32(L.H.flags, true) & ~L.FLAG_ZEROED_GRAIN).toBe(L.FLAG_NL_DETECT | L.FLAG_COMPRESSED | L.FLAG_MARKERS);
  expect([v.getUint32(L.H.gdOffset, true), v.getUint32(L.H.gdOffset + 4, true)]).toEqual([L.GD_AT_END_LO, L.GD_AT_END_HI]);
  expect(v.getUint16(L.H.compressAlgorithm, true)).toBe(L.COMPRESSION_DEFLATE);
  const walk: StreamWalk = { grains: [], tables: 0, directory: [], footer: v };
  let pos = Number(v.getBigUint64(L.H.overHead, true)) * L.SECTOR;
  let lastLba = -1;
  for (;;) {
    expect(pos % L.SECTOR).toBe(0);
    const value = Number(v.getBigUint64(pos, true));
    const size = v.getUint32(pos + 8, true);
    if (size > 0) {
      expect(value).toBeGreaterThan(lastLba);
      lastLba = value;
      walk.grains.push(value);
      pos += Math.ceil((12 + size) / L.SECTOR) * L.SECTOR;
      continue;
    }
    const type = v.getUint32(pos + 12, true);
    if (type === L.MARKER_EOS) {
      expect(pos + L.SECTOR).toBe(bytes.length);
      return walk;
    }
    if (type === L.MARKER_GT) walk.tables++;
    if (type === L.MARKER_GD) {
      for (let i = 0; i < value * 128; i++) walk.directory.push(v.getUint32(pos + L.SECTOR + i * 4, true));
      const footerGd = Number(new DataView(bytes.buffer, bytes.byteOffset + bytes.length - 2 * L.SECTOR).getBigUint64(L.H.gdOffset, true));
      expect(footerGd).toBe(pos / L.SECTOR + 1);
    }
    if (type === L.MARKER_FOOTER) {
      walk.footer = new DataView(bytes.buffer, bytes.byteOffset + pos + L.SECTOR, L.SECTOR);
      expect(pos + 3 * L.SECTOR).toBe(bytes.length);
    }
    pos += L.SECTOR + value * L.SECTOR;
  }
}

const SUBFORMATS = [
  { tag: 'sparse', args: [] as string[], files: ['disk.vmdk'] },
  { tag: 'stream', args: ['-o', 'subformat=streamOptimized'], files: ['disk.vmdk'] },
  { tag: 'flat', args: ['-o', 'subformat=monolithicFlat'], files: ['disk.vmdk', 'disk-flat.vmdk'] },
];

/** Converts with both tools and holds our output to qemu-img's. */
function convertAndCheck(src: Source, tag: string, args: string[], files: string[]): void {
  const pair = convertBoth(dir, tag, src, ['-O', 'vmdk', ...args], 'disk.vmdk');
  const { ours, theirs } = checkOutput(dir, pair, src, 'vmdk', files);
  sizes.push(`vmdk ${args.join(' ') || 'default'} from ${src.name}: ours ${ours} B, qemu-img ${theirs} B`);
  expect(descriptor(join(pair.v, 'disk.vmdk'))).toBe(descriptor(join(pair.q, 'disk.vmdk')));
  const stream = args.some((a) => a.includes('streamOptimized'));
  const flat = args.some((a) => a.includes('monolithicFlat'));
  if (stream) {
    const walk = walkStream(read(join(pair.v, 'disk.vmdk')));
    expect(walk.directory.filter((e) => e !== 0)).toHaveLength(walk.tables);
  } else if (flat) {
    expect(Buffer.compare(read(join(pair.v, 'disk-flat.vmdk')), read(join(pair.q, 'disk-flat.vmdk')))).toBe(0);
  } else {
    expect(Buffer.compare(masked(join(pair.v, 'disk.vmdk')), masked(join(pair.q, 'disk.vmdk')))).toBe(0);
  }
}

describe('vmdk writer: every source into every subformat', () => {
  for (const sub of SUBFORMATS) {
    for (const label of ['raw', 'qcow2', 'compressed qcow2', 'qcow2 chain', 'stream-optimized vmdk', 'vhdx', 'vdi']) {
      it(`${sub.tag} from ${label}`, () => {
        convertAndCheck(sources.find((s) => s.name === label)!, sub.tag, sub.args, sub.files);
      });
    }
  }
});

describe('vmdk writer: options', () => {
  const sets: [string, string[], string[]][] = [
    ['lsilogic-hw7', ['-o', 'adapter_type=lsilogic,hwversion=7'], ['disk.vmdk']],
    ['buslogic-tools', ['-o', 'adapter_type=buslogic,toolsversion=10240'], ['disk.vmdk']],
    ['legacyesx-compat6', ['-o', 'adapter_type=legacyESX,compat6=on'], ['disk.vmdk']],
    ['zeroed', ['-o', 'zeroed_grain=on'], ['disk.vmdk']],
    ['sparse-c', ['-c'], ['disk.vmdk']],
    ['stream-c', ['-c', '-o', 'subformat=streamOptimized'], ['disk.vmdk']],
    ['stream-zeroed-lsi', ['-o', 'subformat=streamOptimized,zeroed_grain=on,adapter_type=lsilogic'], ['disk.vmdk']],
    ['flat-lsi-hw', ['-o', 'subformat=monolithicFlat,adapter_type=lsilogic,hwversion=11'], ['disk.vmdk', 'disk-flat.vmdk']],
    ['stream-S0', ['-S', '0', '-o', 'subformat=streamOptimized'], ['disk.vmdk']],
    ['sparse-S64k', ['-S', '64k'], ['disk.vmdk']],
  ];
  for (const [tag, args, files] of sets) {
    it(tag, () => convertAndCheck(sources[0]!, tag, args, files));
  }
});

// Refusals qemu-img shares are held to its words in test/cli/option-errors.test.ts.
describe('vmdk writer: what vdisk refuses where qemu-img writes, leaving no file behind', () => {
  it('an empty disk (qemu-img writes one it cannot open)', () => {
    ok('create', qemuImg(['create', '-q', '-f', 'raw', join(dir, 'empty.raw'), '0']));
    for (const sub of ['monolithicSparse', 'streamOptimized', 'monolithicFlat']) {
      const r = vdisk(['convert', '-O', 'vmdk', '-o', `subformat=${sub}`, join(dir, 'empty.raw'), join(dir, 'empty.vmdk')]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('at least one sector');
    }
  });

  it('a twoGbMaxExtent subformat', () => {
    const out = join(dir, 'refused');
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out);
    const r = vdisk(['convert', '-O', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', join(dir, 'src.raw'), 'x.vmdk'], { cwd: out });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('twoGbMaxExtentSparse');
    expect(readdirSync(out)).toEqual([]);
  });
});

describe('vmdk writer: empty images as qemu-img create makes them', () => {
  const cases: [string, string][] = [
    ['1000', 'subformat=monolithicSparse'],
    ['1000', 'subformat=streamOptimized'],
    ['100M', 'adapter_type=lsilogic'],
    ['1T', 'subformat=monolithicSparse'],
    ['8T', 'subformat=monolithicFlat'],
    ['8T', 'subformat=monolithicFlat,adapter_type=buslogic'],
  ];
  for (const [size, options] of cases) {
    it(`${size} ${options}`, async () => {
      const folder = join(dir, `empty-${size}-${options.replace(/[=,]/g, '_')}`);
      mkdirSync(join(folder, 'q'), { recursive: true });
      mkdirSync(join(folder, 'v'), { recursive: true });
      ok('qemu-img create', qemuImg(['create', '-q', '-f', 'vmdk', '-o', options, 'e.vmdk', size], { cwd: join(folder, 'q') }));
      // An empty qcow2 maps as zeros throughout, so the pipeline reads nothing.
      ok('qemu-img create qcow2', qemuImg(['create', '-q', '-f', 'qcow2', join(folder, 'empty.qcow2'), size]));
      await convertInProcess(vmdkWriter, join(folder, 'empty.qcow2'), join(folder, 'v', 'e.vmdk'), Object.fromEntries(options.split(',').map((kv) => kv.split('='))));
      expect(descriptor(join(folder, 'v', 'e.vmdk'))).toBe(descriptor(join(folder, 'q', 'e.vmdk')));
      const info = (sub: string) => {
        const r = qemuImg(['info', '--output=json', 'e.vmdk'], { cwd: join(folder, sub) });
        ok('qemu-img info', r);
        return r.stdout.replace(/^.*"(actual-size|cid)".*\n/gm, '');
      };
      expect(info('v')).toBe(info('q'));
      ok('qemu-img check', qemuImg(['check', 'e.vmdk'], { cwd: join(folder, 'v') }));
      if (options.includes('monolithicSparse')) expect(masked(join(folder, 'v', 'e.vmdk')).equals(masked(join(folder, 'q', 'e.vmdk')))).toBe(true);
      rmSync(folder, { recursive: true, force: true });
    });
  }
});

describe('vmdk writer: parent links (-B), in process with the parent CID', () => {
  const sets: [string, Record<string, string>, string[]][] = [
    ['sparse', {}, []],
    ['sparse-zeroed', { zeroed_grain: 'on' }, ['-o', 'zeroed_grain=on']],
    ['stream', { subformat: 'streamOptimized' }, ['-o', 'subformat=streamOptimized']],
    ['stream-zeroed', { subformat: 'streamOptimized', zeroed_grain: 'on' }, ['-o', 'subformat=streamOptimized,zeroed_grain=on']],
  ];
  for (const [tag, options, args] of sets) {
    it(tag, async () => {
      const folder = join(dir, `child-${tag}`);
      mkdirSync(folder, { recursive: true });
      ok('base', qemuImg(['convert', '-O', 'vmdk', join(dir, 'base.qcow2'), join(folder, 'base.vmdk')]));
      ok('qemu-img convert -B', qemuImg(['convert', '-O', 'vmdk', ...args, '-B', 'base.vmdk', '-F', 'vmdk', join(dir, 'top.qcow2'), 'q.vmdk'], { cwd: folder }));
      await convertInProcess(vmdkWriter, join(dir, 'top.qcow2'), join(folder, 'v.vmdk'), options, { name: 'base.vmdk', format: 'vmdk' });
      ok('qemu-img check', qemuImg(['check', 'v.vmdk'], { cwd: folder }));
      ok('qemu-img compare', qemuImg(['compare', '-F', 'vmdk', join(dir, 'top.qcow2'), 'v.vmdk'], { cwd: folder }));
      const info = (name: string) => {
        const r = qemuImg(['info', '--output=json', name], { cwd: folder });
        ok('qemu-img info', r);
        return JSON.parse(r.stdout.replaceAll(name, 'OUT')) as Record<string, unknown>;
      };
      const ours = info('v.vmdk');
      const theirs = info('q.vmdk');
      for (const i of [ours, theirs]) delete i['actual-size'];
      // The parent CID is the base's; each child has a CID of its own.
      expect((ours['format-specific'] as { data: { cid: number } }).data.cid).not.toBe((theirs['format-specific'] as { data: { cid: number } }).data.cid);
      for (const i of [ours, theirs]) delete (i['format-specific'] as { data: Record<string, unknown> }).data['cid'];
      expect(ours).toEqual(theirs);
      expect(descriptor(join(folder, 'v.vmdk')).replace('"v.vmdk"', '"OUT"')).toBe(descriptor(join(folder, 'q.vmdk')).replace('"q.vmdk"', '"OUT"'));
      expect(allocated(join(folder, 'v.vmdk'))).toBeLessThanOrEqual(allocated(join(folder, 'q.vmdk')) * 1.05);
      if (tag.startsWith('stream')) walkStream(read(join(folder, 'v.vmdk')));
    });
  }
});

/** A sink in memory that records where each write landed. */
class RecordingSink implements ByteSink {
  bytes = new Uint8Array(0);
  writes: [number, number][] = [];
  committed = -1;
  constructor(readonly name: string) {}
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.writes.push([offset, data.length]);
    if (offset + data.length > this.bytes.length) {
      const grown = new Uint8Array(Math.max(offset + data.length, this.bytes.length * 2));
      grown.set(this.bytes);
      this.bytes = grown;
    }
    this.bytes.set(data, offset);
  }
  async commit(length: number): Promise<void> {
    this.committed = length;
    const out = new Uint8Array(length);
    out.set(this.bytes.subarray(0, Math.min(length, this.bytes.length)));
    this.bytes = out;
  }
  async abort(): Promise<void> {}
}

describe('vmdk writer: stream-optimized in detail', () => {
  /** Converts `srcPath` to a stream-optimized image in memory. */
  async function streamOf(srcPath: string, compressed: boolean): Promise<RecordingSink> {
    const image = await openImage(await nodeWorkspace.open(srcPath), { opener: nodeWorkspace.opener });
    const sink = new RecordingSink('s.vmdk');
    const w = await vmdkWriter.create(sink, { size: image.size, options: new Map([['subformat', 'streamOptimized']]), compress: false }, () => {
      throw new Error('no extent files');
    });
    await convertImage(image, w, { compressor: compressed ? inlineCompressor : undefined });
    return sink;
  }

  it('is written strictly front to back, with no gap, and reads back through our reader and qemu-img', async () => {
    for (const compressed of [true, false]) {
      const sink = await streamOf(join(dir, 'src.raw'), compressed);
      let end = 0;
      for (const [offset, length] of sink.writes) {
        expect(offset).toBe(end);
        end += length;
      }
      expect(sink.committed).toBe(end);
      walkStream(sink.bytes);
      const path = join(dir, `mem-${compressed}.vmdk`);
      writeFileSync(path, sink.bytes);
      ok('qemu-img compare', qemuImg(['compare', '-f', 'raw', '-F', 'vmdk', join(dir, 'src.raw'), path]));
      const ours = await openImage(new MemorySource('s.vmdk', sink.bytes), { opener: new FileSetOpener(new Map()) });
      const back = new Uint8Array(ours.size);
      await new ImageReader(ours).read(0, back);
      expect(Buffer.compare(back, read(join(dir, 'src.raw')))).toBe(0);
    }
  });

  it('leaves out grain tables with no grains (directory entry 0), which qemu-img reads as unallocated', async () => {
    const src = join(dir, 'gap.raw');
    ok('create', qemuImg(['create', '-q', '-f', 'raw', src, '130M']));
    writeFileSync(join(dir, 'noise.bin'), noise(64 * 1024, 3));
    ok('qemu-io', qemuImg(['dd', 'if=' + join(dir, 'noise.bin'), 'of=' + src, '-f', 'raw', '-O', 'raw', 'bs=64k', 'count=1']));
    const w = await streamOf(src, true);
    const walk = walkStream(w.bytes);
    // Tables 0..4 cover 160 MiB; only table 0 holds a grain.
    expect(walk.directory.slice(0, 5).map((e) => e !== 0)).toEqual([true, false, false, false, false]);
    expect(walk.tables).toBe(1);
    const path = join(dir, 'gap.vmdk');
    writeFileSync(path, w.bytes);
    ok('qemu-img compare', qemuImg(['compare', '-f', 'raw', '-F', 'vmdk', src, path]));
    const map = qemuImg(['map', '--output=json', path]);
    ok('qemu-img map', map);
    expect((JSON.parse(map.stdout) as { data: boolean }[]).filter((e) => e.data)).toHaveLength(1);
  });

  it('compresses an incompressible grain too (VMware requires every grain compressed)', async () => {
    const sink = await streamOf(join(dir, 'src.raw'), true);
    const walk = walkStream(sink.bytes);
    // The noise at 10 MiB: four grains, each stored compressed even though larger than 64 KiB.
    for (let g = 0; g < 4; g++) expect(walk.grains).toContain(((10 * MiB) / 512) + g * 128);
  });
});

describe('vmdk writer: pure pieces', () => {
  it('names flat extents as qemu does', () => {
    expect(flatExtentName('dir.d/disk.vmdk')).toBe('disk-flat.vmdk');
    expect(flatExtentName('dir.d/disk')).toBe('disk-flat');
    expect(flatExtentName('a.b.img')).toBe('a.b-flat.img');
  });

  it('computes the geometry as qemu does, uncapped', () => {
    expect(geometry(204800, 'ide')).toEqual({ cylinders: 203, heads: 16, sectors: 63 });
    expect(geometry(204800, 'lsilogic')).toEqual({ cylinders: 12, heads: 255, sectors: 63 });
    expect(geometry(1, 'ide').cylinders).toBe(0);
  });

  it('a flat output copies nothing it need not: holes stay holes', () => {
    const pair = convertBoth(dir, 'flat-holes', sources[0]!, ['-O', 'vmdk', '-o', 'subformat=monolithicFlat'], 'disk.vmdk');
    expect(allocated(join(pair.v, 'disk-flat.vmdk'))).toBeLessThan(8 * MiB);
  });
});
