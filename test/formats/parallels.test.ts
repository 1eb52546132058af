// Parallels beyond the conformance fixtures: the header parser on its own, and
// images qemu-img cannot make, built here from docs/interop/parallels.txt
// ("WithoutFreeSpace" images with odd cluster sizes, no data_off and BAT
// entries at arbitrary sectors; sizes past 32 bits; Format Extension clusters,
// sound and damaged). Wherever qemu-img reads an image, the expected answer is
// qemu-img's; where it refuses one, vdisk must refuse it too.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describeRun, qemuImg, vdisk } from '../helpers/run.ts';
import { ok, scratchDir } from '../helpers/scratch.ts';
import { checkExtension, parseHeader } from '../../engine/drivers/parallels/header.ts';
import { parallelsDriver } from '../../engine/drivers/parallels/driver.ts';
import * as L from '../../engine/drivers/parallels/layout.ts';
import { md5 } from '../../engine/codecs/md5.ts';
import { MemorySource } from '../../engine/io/source.ts';
import { ImageFormatError, UnsupportedFeatureError, VDiskError } from '../../engine/errors.ts';
import type { Opener } from '../../engine/io/opener.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const scratch = scratchDir('parallels');
const { read, write, sameAsQemu, allSameAsQemu } = scratch;

/** Both tools refuse the image; vdisk names it and gives qemu's reason. */
function bothRefuse(name: string): void {
  const q = qemuImg(['info', name], { cwd: scratch.dir });
  const v = vdisk(['info', name], { cwd: scratch.dir });
  expect(q.status, describeRun('qemu-img', q)).toBe(1);
  expect(v.status, describeRun('vdisk', v)).toBe(1);
  const reason = q.stderr.replace(/^qemu-img: Could not open '[^']*': /, '').trim();
  expect(v.stderr).toContain(`'${name}'`);
  expect(v.stderr).toContain(reason);
}

// ---------------------------------------------------------------------------
// Parallels structures, written from the layout (engine/drivers/parallels/layout.ts)

interface HeaderFields {
  magic?: string;
  version?: number;
  tracks?: number;
  batEntries?: number;
  nbSectors?: bigint;
  inUse?: number;
  dataOff?: number;
  extOff?: bigint;
}

function header(f: HeaderFields = {}): Uint8Array {
  const b = new Uint8Array(L.HEADER_BYTES);
  const v = new DataView(b.buffer);
  const magic = f.magic ?? L.MAGIC_EXT;
  for (let i = 0; i < 16; i++) b[i] = magic.charCodeAt(i);
  v.setUint32(L.H.version, f.version ?? L.VERSION, true);
  v.setUint32(L.H.heads, 16, true);
  v.setUint32(L.H.cylinders, 32, true);
  const tracks = f.tracks ?? 128;
  v.setUint32(L.H.tracks, tracks, true);
  const entries = f.batEntries ?? 16;
  v.setUint32(L.H.batEntries, entries, true);
  v.setBigUint64(L.H.nbSectors, f.nbSectors ?? BigInt(entries * tracks), true);
  v.setUint32(L.H.inUse, f.inUse ?? 0x312e3276, true);
  v.setUint32(L.H.dataOff, f.dataOff ?? tracks, true);
  v.setBigUint64(L.H.extOff, f.extOff ?? 0n, true);
  return b;
}

/** A whole image of `fileBytes`: header, BAT, then `fill` writes the data. */
function image(f: HeaderFields, bat: number[], fileBytes: number, fill: (out: Uint8Array) => void): Uint8Array {
  const out = new Uint8Array(fileBytes);
  fill(out);
  out.set(header({ ...f, batEntries: f.batEntries ?? bat.length }));
  const v = new DataView(out.buffer);
  bat.forEach((e, i) => v.setUint32(L.HEADER_BYTES + i * 4, e, true));
  return out;
}

const text = Buffer.from(Array.from({ length: 20000 }, (_, i) => `2024-03-01 host prl_disp[${i}]: cluster ${i % 89} synced\n`).join(''));

/** Data a pattern per 512-byte sector, with text over part of it, so every cluster differs. */
function fillData(out: Uint8Array): void {
  for (let s = 0; s * 512 < out.length; s++) out.fill(0x20 + (s % 200), s * 512, (s + 1) * 512);
  out.set(text.subarray(0, Math.min(text.length, out.length / 3)), Math.floor(out.length / 3));
}

const noOpener: Opener = {
  resolve: (name) => name,
  open: () => Promise.reject(new Error('no other files')),
};

/** A Format Extension cluster: the given features (magic, flags, data), an end marker, then the checksum. */
function extension(clusterSize: number, features: { magic: bigint; flags?: bigint; data: Uint8Array }[]): Uint8Array {
  const c = new Uint8Array(clusterSize);
  const v = new DataView(c.buffer);
  v.setBigUint64(0, L.EXT_MAGIC, true);
  let pos = L.EXT_HEADER_BYTES;
  for (const f of features) {
    v.setBigUint64(pos, f.magic, true);
    v.setBigUint64(pos + 8, f.flags ?? 0n, true);
    v.setUint32(pos + 16, f.data.length, true);
    c.set(f.data, pos + 24);
    pos += 24 + Math.ceil(f.data.length / 8) * 8;
  }
  c.set(createHash('md5').update(c.subarray(L.EXT_HEADER_BYTES)).digest(), 8);
  return c;
}

/** "Dirty bitmaps feature" data: size in sectors, id, granularity in sectors, L1 table. */
function bitmapFeature(sectors: bigint, granularity: number, l1: bigint[], id = 7): Uint8Array {
  const d = new Uint8Array(32 + l1.length * 8);
  const v = new DataView(d.buffer);
  v.setBigUint64(0, sectors, true);
  d.fill(id, 8, 24);
  v.setUint32(24, granularity, true);
  v.setUint32(28, l1.length, true);
  l1.forEach((e, i) => v.setBigUint64(32 + i * 8, e, true));
  return d;
}

// ---------------------------------------------------------------------------

describe('the header parser', () => {
  it('reads both flavours: BAT units, and a size cut to 32 bits in the original one', () => {
    const big = 3n * 2n ** 40n / 512n;
    const ext = parseHeader(header({ tracks: 2048, batEntries: 4, nbSectors: big }), 'x.prl');
    expect(ext).toMatchObject({ extended: true, tracks: 2048, batEntries: 4, size: 3 * 2 ** 40, batUnit: MiB, inUse: false, extOffset: 0n });
    const old = parseHeader(header({ magic: L.MAGIC, tracks: 63, batEntries: 4, nbSectors: big, inUse: L.IN_USE }), 'x.prl');
    expect(old).toMatchObject({ extended: false, size: 2 ** 40, batUnit: 512, inUse: true });
  });

  it("refuses what qemu refuses, naming the field's offset", () => {
    const fails = (f: HeaderFields, detail: RegExp, offset: number) => {
      let err: unknown;
      try {
        parseHeader(header(f), 'x.prl');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ImageFormatError);
      expect((err as Error).message).toMatch(detail);
      expect((err as ImageFormatError).offset).toBe(offset);
    };
    fails({ version: 3 }, /Image not in Parallels format/, 0);
    fails({ magic: 'WithoutFreeSpacf' }, /Image not in Parallels format/, 0);
    fails({ tracks: 0 }, /Zero sectors per track/, L.H.tracks);
    fails({ tracks: L.MAX_TRACKS + 1 }, /Too big cluster/, L.H.tracks);
    fails({ batEntries: L.MAX_BAT_ENTRIES + 1 }, /Catalog too large/, L.H.batEntries);
    fails({ nbSectors: 2n ** 54n }, /too large/, L.H.nbSectors);
  });

  it('says plainly that sizes past 2^53 bytes are beyond this engine', () => {
    expect(() => parseHeader(header({ nbSectors: 2n ** 50n }), 'x.prl')).toThrow(UnsupportedFeatureError);
  });

  it('answers any header bytes with a structure or a typed error', () => {
    const base = header();
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 0, max: 255 })), { maxLength: 10 }), (pokes) => {
        const b = base.slice();
        for (const [at, value] of pokes) b[at] = value;
        try {
          const h = parseHeader(b, 'x.prl');
          expect(h.tracks).toBeGreaterThan(0);
          expect(Number.isSafeInteger(h.size)).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(VDiskError);
        }
      }),
    );
  });

  it('checks a Format Extension: magic, checksum, features', () => {
    const cs = 64 * KiB;
    const good = extension(cs, [{ magic: L.EXT_DIRTY_BITMAP, data: bitmapFeature(2048n, 128, [0n]) }]);
    expect(() => checkExtension(good, 'x.prl', 0, 2048)).not.toThrow();
    const corrupt = good.slice();
    corrupt[cs - 1] = 1;
    expect(() => checkExtension(corrupt, 'x.prl', 0, 2048)).toThrow(/Wrong checksum/);
    expect(() => checkExtension(extension(cs, [{ magic: 5n, data: new Uint8Array(8) }]), 'x.prl', 0, 2048)).toThrow(/Unknown feature: 0x5/);
    expect(() => checkExtension(extension(cs, [{ magic: L.EXT_DIRTY_BITMAP, data: bitmapFeature(4096n, 128, [0n]) }]), 'x.prl', 0, 2048)).toThrow(/differs from disk size/);
  });

  it('computes MD5 as RFC 1321 does', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (data) => {
        expect(Buffer.from(md5(data)).toString('hex')).toBe(createHash('md5').update(data).digest('hex'));
      }),
    );
  });
});

describe('opening images from bytes', () => {
  it('refuses a BAT entry past the end of the file, naming the entry', async () => {
    const bytes = image({}, [1, 0, 0, 40], 3 * 64 * KiB, fillData);
    const err = await parallelsDriver.open(new MemorySource('m.prl', bytes), { opener: noOpener }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageFormatError);
    expect((err as ImageFormatError).offset).toBe(L.HEADER_BYTES + 12);
    expect((err as Error).message).toMatch(/cluster 3 is mapped to 0x280000/);
  });

  it('probes a header cut short, as qemu probes a zero-padded buffer', () => {
    const b = header();
    expect(parallelsDriver.probe(b.subarray(0, 20), 20)).toBe(100);
    expect(parallelsDriver.probe(b.subarray(0, 19), 19)).toBe(0);
  });
});

describe('images qemu-img cannot make', () => {
  it('reads a "WithoutFreeSpace" image with 3-sector clusters, no data_off and clusters at any sector', () => {
    // Clusters of 1536 bytes; BAT entries count sectors. Entry 1 points into
    // the BAT itself (sector 1), which qemu reads like any other cluster.
    const bat = [9, 0, 30, 12, 15, 1, 0, 21, 24, 27, 40, 0];
    write('old.prl', image({ magic: L.MAGIC, tracks: 3, dataOff: 0 }, bat, 43 * 512, fillData));
    allSameAsQemu('old.prl');
  });

  it('reads a size past 32 bits from a "WithouFreSpacExt" header, and the low 32 bits of it from a "WithoutFreeSpace" one', () => {
    // 2 TiB + 512 MiB with a BAT of four 1 MiB clusters: everything past them
    // is unallocated. (qemu-img 7.2 map aborts on an unallocated run of 2^31
    // sectors or more, so only info is compared for the big one.)
    const fields = { tracks: 2048, nbSectors: 2n ** 32n + 2n ** 20n, dataOff: 2048 };
    write('big-ext.prl', image(fields, [1, 0, 2, 0], 3 * MiB, fillData));
    sameAsQemu(['info', '--output=json', 'big-ext.prl']);
    sameAsQemu(['info', 'big-ext.prl']);
    write('big-old.prl', image({ ...fields, magic: L.MAGIC }, [2048, 0, 4096, 0], 3 * MiB, fillData));
    allSameAsQemu('big-old.prl', { convert: false });
  });

  it('reads an image with a sound Format Extension (a dirty bitmap), as qemu-img does', () => {
    const cs = 64 * KiB;
    const ext = extension(cs, [{ magic: L.EXT_DIRTY_BITMAP, data: bitmapFeature(2048n, 128, [1n]) }]);
    const bytes = image({ extOff: 4n * 128n, nbSectors: 2048n }, [1, 0, 3], 5 * cs, fillData);
    bytes.set(ext, 4 * cs);
    write('ext.prl', bytes);
    allSameAsQemu('ext.prl');
  });

  describe('refuses a damaged Format Extension, as qemu-img does', () => {
    const cs = 64 * KiB;
    const cases: [string, (c: Uint8Array) => Uint8Array][] = [
      ['bad checksum', (c) => ((c[cs - 8] = 1), c)],
      ['unknown feature', () => extension(cs, [{ magic: 0x1234n, data: new Uint8Array(16) }])],
      ['feature flags', () => extension(cs, [{ magic: L.EXT_DIRTY_BITMAP, flags: 1n, data: bitmapFeature(2048n, 128, [0n]) }])],
      ['bitmap size', () => extension(cs, [{ magic: L.EXT_DIRTY_BITMAP, data: bitmapFeature(1024n, 128, [0n]) }])],
      ['bitmap table size', () => extension(cs, [{ magic: L.EXT_DIRTY_BITMAP, data: bitmapFeature(2048n, 128, [0n, 0n]) }])],
      ['feature too small', () => extension(cs, [{ magic: L.EXT_DIRTY_BITMAP, data: new Uint8Array(16) }])],
      ['same bitmap twice', () =>
        extension(cs, [
          { magic: L.EXT_DIRTY_BITMAP, data: bitmapFeature(2048n, 128, [0n]) },
          { magic: L.EXT_DIRTY_BITMAP, data: bitmapFeature(2048n, 128, [0n]) },
        ])],
    ];
    it.each(cases)('%s', (label, damage) => {
      const good = extension(cs, [{ magic: L.EXT_DIRTY_BITMAP, data: bitmapFeature(2048n, 128, [0n]) }]);
      const bytes = image({ extOff: 4n * 128n, nbSectors: 2048n }, [1, 0, 3], 5 * cs, fillData);
      bytes.set(damage(good), 4 * cs);
      const name = `ext-${label.replace(/ /g, '-')}.prl`;
      write(name, bytes);
      bothRefuse(name);
    });
  });

  it('refuses a header cut short, as qemu-img does', () => {
    // The cluster size is cut off too: qemu reads the missing bytes as zeros.
    write('cut.prl', header().subarray(0, 24));
    bothRefuse('cut.prl');
  });
});
