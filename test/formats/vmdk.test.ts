// VMDK beyond the conformance fixtures: the descriptor parser and probe on
// their own; images qemu-img cannot create, built here from VMware's format
// note (a descriptor whose extents sit in a subfolder, a stream-optimized
// file with its grain directory at the end as VMware writes it, a COWD
// vmfsSparse extent, a seSparse extent); and damaged images, which must fail with a typed error
// naming the file, never hang. Wherever qemu-img reads an image, its answer
// is the expected one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { describeRun, qemuImg, run, vdisk, type RunResult } from '../helpers/run.ts';
import { le64Parts, seSparseExtent } from '../helpers/sesparse.ts';
import { parentHint, parseExtentLines, quotedValue, readCid } from '../../engine/drivers/vmdk/descriptor.ts';
import { vmdkDriver } from '../../engine/drivers/vmdk/driver.ts';
import { BackingFileMissingError, VDiskError } from '../../engine/errors.ts';
import { FileSetOpener } from '../../engine/io/opener.ts';
import { MemorySource, type ByteSource } from '../../engine/io/source.ts';
import { openImage } from '../../engine/image.ts';
import { ImageReader } from '../../engine/ops/read.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-vmdk-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ok = (label: string, r: RunResult) => expect(r.status, describeRun(label, r)).toBe(0);
const create = (args: string[]) => ok('qemu-img create', qemuImg(['create', '-q', ...args], { cwd: dir }));
const qemuIo = (fmt: string, file: string, cmds: string[]) =>
  ok('qemu-io', run('qemu-io', ['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), file], { cwd: dir }));
const withoutSizes = (s: string) => s.replace(/^.*"actual-size".*\n/gm, '').replace(/^disk size:.*\n/gm, '');
const read = (name: string) => new Uint8Array(readFileSync(join(dir, name)));
const write = (name: string, bytes: Uint8Array | string) => writeFileSync(join(dir, name), bytes);

/** Both tools, the same arguments, the same output (minus actual-size / disk size). */
function sameAsQemu(args: string[], cwd = dir): void {
  const q = qemuImg(args, { cwd });
  const v = vdisk(args, { cwd });
  ok('qemu-img ' + args.join(' '), q);
  ok('vdisk ' + args.join(' '), v);
  expect(withoutSizes(v.stdout)).toBe(withoutSizes(q.stdout));
}

/** convert -O raw with both tools; returns vdisk's output after checking it equals qemu-img's. */
function convertLikeQemu(name: string): Uint8Array {
  ok('qemu-img convert', qemuImg(['convert', '-O', 'raw', name, name + '.q.raw'], { cwd: dir }));
  ok('vdisk convert', vdisk(['convert', '-O', 'raw', name, name + '.v.raw'], { cwd: dir }));
  const v = read(name + '.v.raw');
  expect(Buffer.compare(v, read(name + '.q.raw'))).toBe(0);
  return v;
}

/** vdisk refuses: exit 1, one message naming the file and the structure. */
function vdiskRefuses(args: string[], file: string, detail: RegExp): void {
  const v = vdisk(args, { cwd: dir, timeoutMs: 20_000 });
  expect(v.status, describeRun('vdisk', v)).toBe(1);
  expect(v.stdout).toBe('');
  expect(v.stderr).toContain(file);
  expect(v.stderr).toMatch(detail);
}

const LINE = '2024-03-01 12:00:01 host07 sshd[4242]: session opened for user admin\n';
const text = (n: number) => new TextEncoder().encode(LINE.repeat(Math.ceil(n / LINE.length))).subarray(0, n);
const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 17 + (i >> 9)) & 0xff);

const le32 = (b: Uint8Array, at: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(at, v >>> 0, true);
const le64 = (b: Uint8Array, at: number, v: number) => {
  le32(b, at, v % 2 ** 32);
  le32(b, at + 4, Math.floor(v / 2 ** 32));
};
const rdLe32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint32(at, true);

const descriptor = (createType: string, extents: string[], extra = '') =>
  `# Disk DescriptorFile\nversion=1\nCID=2bd7a5c1\nparentCID=ffffffff\ncreateType="${createType}"\n${extra}\n# Extent description\n${extents.join('\n')}\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = "ide"\n`;

// ---------------------------------------------------------------------------

describe('descriptor parsing, as qemu 7.2 reads it', () => {
  it('reads extent lines of every kind qemu opens and skips the others', () => {
    const lines = parseExtentLines(
      [
        'RW 8192 FLAT "a b.vmdk" 16',
        'RW 4096 SPARSE "s.vmdk"',
        'RW 100 VMFS "v.vmdk"',
        'RDONLY 100 FLAT "ro.vmdk" 0',
        'RW 100 ZERO',
        'NOACCESS 100 SPARSE "n.vmdk"',
        'RW 0 SPARSE "empty.vmdk"',
        'RW 64 VMFSSPARSE "delta.vmdk"',
        '# RW 64 FLAT "comment.vmdk" 0',
      ].join('\n'),
    );
    expect(lines).toEqual([
      { type: 'FLAT', sectors: 8192, name: 'a b.vmdk', flatOffset: 16 },
      { type: 'SPARSE', sectors: 4096, name: 's.vmdk', flatOffset: 0 },
      { type: 'VMFS', sectors: 100, name: 'v.vmdk', flatOffset: 0 },
      { type: 'VMFSSPARSE', sectors: 64, name: 'delta.vmdk', flatOffset: 0 },
    ]);
  });

  it('reads an extent line twice after a blank line, as sscanf skips newlines', () => {
    expect(parseExtentLines('x\n\nRW 8 FLAT "f" 0\n').map((l) => l.name)).toEqual(['f', 'f']);
  });

  it('refuses lines qemu calls invalid', () => {
    expect(() => parseExtentLines('RW 8 FLAT "f"\n')).toThrow(/Invalid extent line: RW 8 FLAT "f"$/);
    expect(() => parseExtentLines('RW 8 FLAT "f" -1')).toThrow(/Invalid extent line/);
    expect(() => parseExtentLines('RW 8 SPARSE "f" 3')).toThrow(/Invalid extent line/);
    expect(() => parseExtentLines('RW 8 VMFS "f" 3')).toThrow(/Invalid extent line/);
    expect(() => parseExtentLines(`RW ${2 ** 60} FLAT "f" 0`)).toThrow(/Extent too large/);
  });

  it('finds values by substring search, as qemu does', () => {
    const t = 'version=1\nparentCID=ffffffff\nCID=1234abcd\ncreateType="monolithicFlat"\nparentFileNameHint="../base.vmdk"\n';
    // The first "CID" is the one inside "parentCID".
    expect(readCid(t, 'CID')).toBe(0xffffffff);
    expect(readCid(t, 'parentCID')).toBe(0xffffffff);
    expect(readCid('CID=0x10\n', 'CID')).toBe(16);
    expect(readCid('CID=123456789abc\n', 'CID')).toBe(0x56789abc);
    expect(readCid('CID=zz\n', 'CID')).toBeUndefined();
    expect(quotedValue(t, 'createType', 128)).toBe('monolithicFlat');
    expect(quotedValue('createType="x', 'createType', 128)).toBeUndefined();
    expect(parentHint(t)).toBe('../base.vmdk');
    expect(() => parentHint('parentFileNameHint="no end')).toThrow();
  });

  it('never throws anything but its own error, whatever the text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        try {
          parseExtentLines(s);
        } catch (e) {
          expect((e as Error).message).toMatch(/^(Invalid extent line|Extent too large)/);
        }
      }),
    );
  });

  it('probes like qemu: magic, or version= as the first line that is not a comment or blank', () => {
    const probe = (s: string) => vmdkDriver.probe(new TextEncoder().encode(s), s.length);
    expect(probe('KDMV')).toBe(100);
    expect(probe('COWD')).toBe(100);
    expect(probe('# Disk DescriptorFile\n   \r\nversion=1\r\n')).toBe(100);
    expect(probe('# c\nversion=3\n')).toBe(100);
    expect(probe('version=4\n')).toBe(0);
    expect(probe('\nversion=1\n')).toBe(0);
    expect(probe('KDM')).toBe(0);
  });
});

// ---------------------------------------------------------------------------

describe('a descriptor whose extents sit in a subfolder', () => {
  const flat = new Uint8Array(4 * 1048576);
  const part = new Uint8Array(2 * 1048576);
  beforeAll(() => {
    mkdirSync(join(dir, 'case/sub'), { recursive: true });
    flat.set(pattern(1048576, 1), 0);
    flat.set(text(300_000), 1048576 + 4096);
    flat.set(pattern(65536, 2), 3 * 1048576);
    write('case/sub/disk-flat.vmdk', flat);
    create(['-f', 'vmdk', 'case/sub/part.vmdk', '2M']);
    write('text.bin', text(100_000));
    qemuIo('vmdk', 'case/sub/part.vmdk', ['write -P 0x5a 64k 64k', 'write -s text.bin 1048576 100000']);
    part.fill(0x5a, 65536, 131072);
    part.set(text(100_000), 1048576);
    write('case/desc.vmdk', descriptor('monolithicFlat', ['RW 8192 FLAT "sub/disk-flat.vmdk" 0', 'RW 4096 SPARSE "sub/part.vmdk"']));
  });

  it('converts to what was written, as qemu-img does', () => {
    const out = convertLikeQemu('case/desc.vmdk');
    expect(out.length).toBe(flat.length + part.length);
    expect(Buffer.compare(out.subarray(0, flat.length), flat)).toBe(0);
    expect(Buffer.compare(out.subarray(flat.length), part)).toBe(0);
  });

  it('prints the same info and map as qemu-img, from its folder and from elsewhere', () => {
    for (const cwd of [dir, join(dir, 'case'), join(dir, 'case/sub')]) {
      const name = cwd === dir ? 'case/desc.vmdk' : cwd.endsWith('sub') ? '../desc.vmdk' : 'desc.vmdk';
      for (const args of [['info', '--output=json'], ['info'], ['map', '--output=json'], ['map']]) sameAsQemu([...args, name], cwd);
    }
  });

  it('opens extents through the opener gate, by the names the descriptor gives', async () => {
    const files = new Map<string, ByteSource>([
      ['vm/desc.vmdk', new MemorySource('vm/desc.vmdk', read('case/desc.vmdk'))],
      ['vm/sub/disk-flat.vmdk', new MemorySource('vm/sub/disk-flat.vmdk', flat)],
    ]);
    const opener = new FileSetOpener(files);
    const err = await vmdkDriver.open(files.get('vm/desc.vmdk')!, { opener }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackingFileMissingError);
    expect((err as BackingFileMissingError).requested).toBe('sub/part.vmdk');
    expect((err as BackingFileMissingError).kind).toBe('extent');

    files.set('vm/sub/part.vmdk', new MemorySource('vm/sub/part.vmdk', read('case/sub/part.vmdk')));
    const image = await openImage(files.get('vm/desc.vmdk')!, { opener: new FileSetOpener(files) });
    const out = await new ImageReader(image).read(flat.length - 4096, new Uint8Array(4096 + 131072));
    expect(Buffer.compare(out.subarray(0, 4096), flat.subarray(flat.length - 4096))).toBe(0);
    expect(Buffer.compare(out.subarray(4096), part.subarray(0, 131072))).toBe(0);
  });

  it('maps every offset into one run that starts there and stays inside the disk', async () => {
    const files = new Map<string, ByteSource>(
      ['case/desc.vmdk', 'case/sub/disk-flat.vmdk', 'case/sub/part.vmdk'].map((n) => [n, new MemorySource(n, read(n))]),
    );
    const layer = await vmdkDriver.open(files.get('case/desc.vmdk')!, { opener: new FileSetOpener(files) });
    await fc.assert(
      fc.asyncProperty(fc.nat(layer.size - 1), fc.integer({ min: 1, max: 4 * 1048576 }), async (offset, len) => {
        const m = await layer.getMapping(offset, len);
        expect(m.offset).toBe(offset);
        expect(m.length).toBeGreaterThan(0);
        expect(m.length).toBeLessThanOrEqual(Math.min(len, layer.size - offset));
        // No run crosses the boundary between the two extents.
        if (offset < flat.length) expect(offset + m.length).toBeLessThanOrEqual(flat.length);
      }),
      { numRuns: 200 },
    );
  });
});

// ---------------------------------------------------------------------------
// A stream-optimized file as VMware writes it: grains and tables after
// markers, the grain directory found through the footer.

const SECTOR = 512;
const GRAIN = 65536;

function header(opts: { capacity: number; gdOffset: number; descOffset: number; descSectors: number; overHead: number; gdAtEnd?: boolean }): Uint8Array {
  const h = new Uint8Array(SECTOR);
  h.set([0x4b, 0x44, 0x4d, 0x56]);
  le32(h, 4, 3);
  le32(h, 8, 0x30001);
  le64(h, 12, opts.capacity);
  le64(h, 20, GRAIN / SECTOR);
  le64(h, 28, opts.descOffset);
  le64(h, 36, opts.descSectors);
  le32(h, 44, 512);
  if (opts.gdAtEnd) {
    le32(h, 56, 0xffffffff);
    le32(h, 60, 0xffffffff);
  } else {
    le64(h, 56, opts.gdOffset);
  }
  le64(h, 64, opts.overHead);
  h.set([0x0a, 0x20, 0x0d, 0x0a], 73);
  h[77] = 1;
  return h;
}

function marker(value: number, size: number, type: number): Uint8Array {
  const m = new Uint8Array(SECTOR);
  le64(m, 0, value);
  le32(m, 8, size);
  le32(m, 12, type);
  return m;
}

const padded = (b: Uint8Array) => {
  const out = new Uint8Array(Math.ceil(b.length / SECTOR) * SECTOR);
  out.set(b);
  return out;
};

/** A streamOptimized file with the given grains (index → 64 KiB of data); grains not given are not stored. */
function buildStream(capacitySectors: number, grains: Map<number, Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = [];
  let sector = 0;
  const put = (b: Uint8Array) => {
    parts.push(b);
    const at = sector;
    sector += b.length / SECTOR;
    return at;
  };
  const descText = new TextEncoder().encode(descriptor('streamOptimized', [`RW ${capacitySectors} SPARSE "built.vmdk"`]));
  const descSectors = Math.ceil(descText.length / SECTOR);
  const overHead = 128;
  put(header({ capacity: capacitySectors, gdOffset: 0, descOffset: 1, descSectors, overHead, gdAtEnd: true }));
  put(padded(descText));
  put(new Uint8Array((overHead - 1 - descSectors) * SECTOR));
  const gtes = new Map<number, number>();
  for (const [index, data] of [...grains].sort((a, b) => a[0] - b[0])) {
    const z = deflateSync(data);
    const g = new Uint8Array(12 + z.length);
    le64(g, 0, (index * GRAIN) / SECTOR);
    le32(g, 8, z.length);
    g.set(z, 12);
    gtes.set(index, put(padded(g)));
  }
  const grainCount = Math.ceil(capacitySectors / (GRAIN / SECTOR));
  const gtCount = Math.ceil(grainCount / 512);
  const gd = new Uint8Array(Math.ceil((gtCount * 4) / SECTOR) * SECTOR);
  for (let t = 0; t < gtCount; t++) {
    const gt = new Uint8Array(2048);
    let any = false;
    for (let e = 0; e < 512; e++) {
      const s = gtes.get(t * 512 + e);
      if (s !== undefined) {
        le32(gt, e * 4, s);
        any = true;
      }
    }
    if (!any) continue;
    put(marker(4, 0, 1));
    le32(gd, t * 4, put(gt));
  }
  put(marker(gd.length / SECTOR, 0, 2));
  const gdAt = put(gd);
  put(marker(1, 0, 3));
  put(header({ capacity: capacitySectors, gdOffset: gdAt, descOffset: 1, descSectors, overHead }));
  put(marker(0, 0, 0));
  const out = new Uint8Array(sector * SECTOR);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe('a stream-optimized file with its grain directory at the end', () => {
  const size = 40 * 1048576;
  const grains = new Map<number, Uint8Array>([
    [0, text(GRAIN)],
    [1, pattern(GRAIN, 3)],
    [100, new Uint8Array(GRAIN).fill(0x77)],
    // In the second grain table.
    [600, text(GRAIN).reverse()],
    [size / GRAIN - 1, pattern(GRAIN, 9)],
  ]);
  beforeAll(() => write('built.vmdk', buildStream(size / SECTOR, grains)));

  it('reads the footer and converts to the grains it was built from, as qemu-img does', () => {
    const out = convertLikeQemu('built.vmdk');
    expect(out.length).toBe(size);
    for (const [index, data] of grains) expect(Buffer.compare(out.subarray(index * GRAIN, (index + 1) * GRAIN), data)).toBe(0);
  });

  it('prints the same info and map as qemu-img', () => {
    for (const args of [['info', '--output=json'], ['info'], ['map', '--output=json']]) sameAsQemu([...args, 'built.vmdk']);
  });

  it('refuses a footer that is not one, as qemu does', () => {
    const b = buildStream(size / SECTOR, grains);
    // The footer marker's type.
    b[b.length - 3 * SECTOR + 12] = 9;
    write('bad-footer.vmdk', b);
    expect(qemuImg(['info', 'bad-footer.vmdk'], { cwd: dir }).stderr).toContain('Invalid footer');
    vdiskRefuses(['info', 'bad-footer.vmdk'], 'bad-footer.vmdk', /footer.*Invalid footer/);
  });

  it('fails with a typed error on a grain that does not inflate', () => {
    const b = buildStream(size / SECTOR, grains);
    // The first grain's zlib data starts 12 bytes into sector 128.
    b.fill(0xff, 128 * SECTOR + 14, 128 * SECTOR + 40);
    write('bad-grain.vmdk', b);
    vdiskRefuses(['convert', '-O', 'raw', 'bad-grain.vmdk', 'bad-grain.raw'], 'bad-grain.vmdk', /compressed grain at offset 65536: corrupt zlib stream/);
  });
});

// ---------------------------------------------------------------------------

describe('a COWD (vmfsSparse) extent', () => {
  const capacity = 8192;
  const grainSectors = 8;
  const data = new Uint8Array(capacity * SECTOR);
  beforeAll(() => {
    // Header, grain directory at sector 4 (one entry), one grain table of 4096 entries at sector 8, grains after.
    const gtSectors = (4096 * 4) / SECTOR;
    const firstGrain = 8 + gtSectors;
    const grains = [0, 3, 200, 1023];
    const file = new Uint8Array((firstGrain + grains.length * grainSectors) * SECTOR);
    file.set([0x43, 0x4f, 0x57, 0x44]);
    le32(file, 4, 1);
    le32(file, 8, 3);
    le32(file, 12, capacity);
    le32(file, 16, grainSectors);
    le32(file, 20, 4);
    le32(file, 24, 1);
    le32(file, 4 * SECTOR, 8);
    grains.forEach((g, i) => {
      const at = firstGrain + i * grainSectors;
      le32(file, 8 * SECTOR + g * 4, at);
      const bytes = pattern(grainSectors * SECTOR, g + 5);
      file.set(bytes, at * SECTOR);
      data.set(bytes, g * grainSectors * SECTOR);
    });
    write('cowd-delta.vmdk', file);
    write('cowd.vmdk', descriptor('vmfsSparse', [`RW ${capacity} VMFSSPARSE "cowd-delta.vmdk"`]));
  });

  it('converts to its grains and prints what qemu-img prints', () => {
    const out = convertLikeQemu('cowd.vmdk');
    expect(Buffer.compare(out, data)).toBe(0);
    for (const args of [['info', '--output=json'], ['map', '--output=json'], ['map']]) sameAsQemu([...args, 'cowd.vmdk']);
  });
});

// ---------------------------------------------------------------------------

describe('a seSparse extent', () => {
  const capacity = (48 * 1048576) / SECTOR;
  const grain = 4096;
  const data = new Uint8Array(capacity * SECTOR);
  beforeAll(() => {
    // Grain tables 0 and 2 are allocated.
    const grains = [0, 1, 7, 4096 * 2 + 5, 4096 * 2 + 4095].map((g) => ({ index: g, bytes: g === 7 ? text(grain) : pattern(grain, g) }));
    const { file, entryAt } = seSparseExtent(capacity, grains);
    for (const g of grains) data.set(g.bytes, g.index * grain);
    // A zero grain over nothing and an unmapped one: both read as zeros.
    le64Parts(file, entryAt(9), 0x20000000, 0);
    le64Parts(file, entryAt(10), 0x10000000, 0);
    write('se-sparse.vmdk', file);
    write('se.vmdk', descriptor('seSparse', [`RW ${capacity} SESPARSE "se-sparse.vmdk"`]));
  });

  it('converts to its grains and prints what qemu-img prints', () => {
    const out = convertLikeQemu('se.vmdk');
    expect(Buffer.compare(out, data)).toBe(0);
    for (const args of [['info', '--output=json'], ['info'], ['map', '--output=json'], ['map']]) sameAsQemu([...args, 'se.vmdk']);
  });

  it('refuses what qemu refuses: a bad magic, a journal to replay, a malformed table entry', () => {
    const good = read('se-sparse.vmdk');
    const damage = (name: string, poke: (b: Uint8Array) => void) => {
      const b = good.slice();
      poke(b);
      write(name + '-sparse.vmdk', b);
      write(name + '.vmdk', descriptor('seSparse', [`RW ${capacity} SESPARSE "${name}-sparse.vmdk"`]));
    };
    damage('se-magic', (b) => (b[0] = 0));
    vdiskRefuses(['info', 'se-magic.vmdk'], 'se-magic-sparse.vmdk', /Bad const header magic/);
    damage('se-dirty', (b) => le32(b, SECTOR + 24, 1));
    vdiskRefuses(['info', 'se-dirty.vmdk'], 'se-dirty-sparse.vmdk', /journal replay/);
    damage('se-entry', (b) => le64Parts(b, 16 * SECTOR + 3 * 8, 0x70000000, 0));
    vdiskRefuses(['map', 'se-entry.vmdk'], 'se-entry-sparse.vmdk', /grain table at offset 8216: invalid grain table entry 3/);
    expect(qemuImg(['map', 'se-entry.vmdk'], { cwd: dir }).status).toBe(1);
  });
});

describe('quirks kept because qemu-img has them', () => {
  it('reads a blank line before an extent line as that extent twice', () => {
    write('blank-a.raw', pattern(1048576, 11));
    write('blank.vmdk', descriptor('monolithicFlat', ['', 'RW 2048 FLAT "blank-a.raw" 0']));
    sameAsQemu(['info', '--output=json', 'blank.vmdk']);
    expect(convertLikeQemu('blank.vmdk').length).toBe(2 * 1048576);
  });

  it('reads a GTE of 1 as the grain at sector 1 when zeroed grains are off', () => {
    create(['-f', 'vmdk', 'gte1.vmdk', '1M']);
    qemuIo('vmdk', 'gte1.vmdk', ['write -P 0x61 0 64k']);
    const b = read('gte1.vmdk');
    const gt = rdLe32(b, rdLe32(b, 56) * SECTOR) * SECTOR;
    le32(b, gt + 4, 1);
    write('gte1.vmdk', b);
    sameAsQemu(['map', '--output=json', 'gte1.vmdk']);
    convertLikeQemu('gte1.vmdk');
  });

  it('refuses to read through a parent whose CID changed, but maps it', () => {
    create(['-f', 'vmdk', 'cid-base.vmdk', '1M']);
    qemuIo('vmdk', 'cid-base.vmdk', ['write -P 0x41 0 64k']);
    create(['-f', 'vmdk', '-b', 'cid-base.vmdk', '-F', 'vmdk', 'cid-child.vmdk', '1M']);
    qemuIo('vmdk', 'cid-child.vmdk', ['write -P 0x43 128k 64k']);
    convertLikeQemu('cid-child.vmdk');
    qemuIo('vmdk', 'cid-base.vmdk', ['write -P 0x42 64k 64k']);
    sameAsQemu(['map', '--output=json', 'cid-child.vmdk']);
    expect(qemuImg(['convert', '-O', 'raw', 'cid-child.vmdk', 'cid.q.raw'], { cwd: dir }).stderr).toContain('error while reading');
    vdiskRefuses(['convert', '-O', 'raw', 'cid-child.vmdk', 'cid.v.raw'], 'cid-child.vmdk', /parentCID [0-9a-f]{8} is not the CID of the parent 'cid-base.vmdk'/);
  });
});

// ---------------------------------------------------------------------------

describe('damaged images: typed errors, never a hang', () => {
  let victim: Uint8Array;
  /** Where the grain directory and the first grain table are in the victim. */
  let gdAt: number;
  let gtAt: number;
  beforeAll(() => {
    create(['-f', 'vmdk', 'victim.vmdk', '4M']);
    qemuIo('vmdk', 'victim.vmdk', ['write -P 0x33 0 128k', 'write -P 0x34 3M 64k']);
    victim = read('victim.vmdk');
    gdAt = rdLe32(victim, 56) * SECTOR;
    gtAt = rdLe32(victim, gdAt) * SECTOR;
  });
  const damaged = (name: string, poke: (b: Uint8Array) => void) => {
    const b = victim.slice();
    poke(b);
    write(name, b);
  };

  it('a grain directory past the end of the file (qemu reads zeros)', () => {
    damaged('gd-eof.vmdk', (b) => le64(b, 56, 0x100000));
    vdiskRefuses(['info', 'gd-eof.vmdk'], 'gd-eof.vmdk', /grain directory at offset 536870912: .*past the end of the file/);
  });

  it('a grain table past the end of the file (qemu reads zeros)', () => {
    damaged('gt-eof.vmdk', (b) => le32(b, gdAt, 0x100000));
    ok('vdisk info', vdisk(['info', 'gt-eof.vmdk'], { cwd: dir }));
    vdiskRefuses(['map', 'gt-eof.vmdk'], 'gt-eof.vmdk', /grain table at offset 536870912: .*past the end of the file/);
    vdiskRefuses(['convert', '-O', 'raw', 'gt-eof.vmdk', 'gt-eof.raw'], 'gt-eof.vmdk', /grain table at offset/);
  });

  it('a grain table entry pointing past the end of the file (qemu reads zeros)', () => {
    damaged('gte-eof.vmdk', (b) => le32(b, gtAt + 4, 0x100000));
    vdiskRefuses(['map', '--output=json', 'gte-eof.vmdk'], 'gte-eof.vmdk', new RegExp(`grain table at offset ${gtAt + 4}: grain at offset 536870912 lies past`));
  });

  it('an absurd capacity', () => {
    damaged('capacity.vmdk', (b) => {
      le32(b, 12, 0xffffffff);
      le32(b, 16, 0xffffffff);
    });
    vdiskRefuses(['info', 'capacity.vmdk'], 'capacity.vmdk', /sparse header at offset 12: capacity .* too large/);
    damaged('capacity2.vmdk', (b) => le64(b, 12, 2 ** 40));
    vdiskRefuses(['info', 'capacity2.vmdk'], 'capacity2.vmdk', /grain directory at offset \d+: .*past the end/);
  });

  it('a grain size of zero (qemu divides by it)', () => {
    damaged('grain0.vmdk', (b) => le64(b, 20, 0));
    vdiskRefuses(['info', 'grain0.vmdk'], 'grain0.vmdk', /sparse header at offset 44: L1 entry size is invalid/);
  });

  it('a descriptor naming itself as an extent', () => {
    write('self.vmdk', descriptor('monolithicFlat', ['RW 2048 SPARSE "self.vmdk"']));
    vdiskRefuses(['info', 'self.vmdk'], 'self.vmdk', /extent 'self.vmdk' is the descriptor itself/);
    write('self-flat.vmdk', descriptor('monolithicFlat', ['RW 2048 FLAT "./self-flat.vmdk" 0']));
    vdiskRefuses(['map', 'self-flat.vmdk'], 'self-flat.vmdk', /is the descriptor itself/);
  });

  it('a sparse file whose embedded descriptor names itself (qemu recurses without end)', () => {
    const text = new TextEncoder().encode(descriptor('twoGbMaxExtentSparse', ['RW 2048 SPARSE "loop.vmdk"']));
    const b = new Uint8Array(2 * SECTOR + text.length);
    b.set(header({ capacity: 0, gdOffset: 0, descOffset: 1, descSectors: 2, overHead: 0 }));
    b.set(text, SECTOR);
    write('loop.vmdk', b);
    vdiskRefuses(['info', 'loop.vmdk'], 'loop.vmdk', /is the descriptor itself/);
    // Two files naming each other.
    const other = new TextEncoder().encode(descriptor('twoGbMaxExtentSparse', ['RW 2048 SPARSE "loop-b.vmdk"']));
    const a = new Uint8Array(2 * SECTOR + other.length);
    a.set(header({ capacity: 0, gdOffset: 0, descOffset: 1, descSectors: 2, overHead: 0 }));
    a.set(other, SECTOR);
    write('loop-a.vmdk', a);
    const back = new TextEncoder().encode(descriptor('twoGbMaxExtentSparse', ['RW 2048 SPARSE "loop-a.vmdk"']));
    const c = new Uint8Array(2 * SECTOR + back.length);
    c.set(header({ capacity: 0, gdOffset: 0, descOffset: 1, descSectors: 2, overHead: 0 }));
    c.set(back, SECTOR);
    write('loop-b.vmdk', c);
    vdiskRefuses(['info', 'loop-a.vmdk'], 'loop-a.vmdk', /is the descriptor itself/);
  });

  it('a descriptor with no usable extent (qemu-img info aborts on it)', () => {
    write('none.vmdk', descriptor('monolithicFlat', ['RDONLY 2048 FLAT "x.raw" 0']));
    vdiskRefuses(['info', 'none.vmdk'], 'none.vmdk', /no usable extent/);
  });

  it('random damage to the header: a typed error or an answer, quickly', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(79), fc.integer({ min: 0, max: 255 }), async (at, value) => {
        const b = victim.slice();
        b[at] = value;
        const source = new MemorySource('fuzz.vmdk', b);
        const opener = new FileSetOpener(new Map([['fuzz.vmdk', source]]));
        try {
          const image = await openImage(source, { opener, format: 'vmdk' });
          await new ImageReader(image).read(0, new Uint8Array(Math.min(image.size, 1048576)));
        } catch (e) {
          expect(e).toBeInstanceOf(VDiskError);
        }
      }),
      { numRuns: 300 },
    );
  });
});
