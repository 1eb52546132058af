// The VHD (vpc) writer against qemu-img: every source converted with every
// option set by both tools; the virtual size and CHS geometry a new disk gets,
// for many sizes, equal to what qemu-img create gives; the Azure preset;
// option errors in qemu-img's words.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { qemuImg, vdisk } from '../helpers/run.ts';
import { buildDynHeader, buildFooter, chsFor, vhdSize } from '../../engine/drivers/vpc/build.ts';
import { parseDynHeader, parseFooter } from '../../engine/drivers/vpc/header.ts';
import { vpcWriter } from '../../engine/drivers/vpc/writer.ts';
import { NodeFileSink } from '../../cli/node-io.ts';
import { checkParity, makeSources, ok, qemuMessage, type Source } from './parity.ts';

let dir: string;
let sources: Source[];
const sizes: string[] = [];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-wvpc-'));
  sources = makeSources(dir);
});
afterAll(() => {
  if (sizes.length) console.log(`vpc output, allocated bytes (ours / qemu-img's):\n${sizes.sort().join('\n')}`);
  rmSync(dir, { recursive: true, force: true });
});

const OPTION_SETS = ['', 'subformat=fixed', 'force_size=on', 'subformat=fixed,force_size=on'];

describe.each(OPTION_SETS)('vpc -o "%s"', (options) => {
  it.concurrent.each([0, 1, 2, 3, 4, 5, 6])('converts source %i as qemu-img does', async (i) => {
    const source = sources[i]!;
    const tag = `${source.file}-${options || 'default'}`.replace(/[=,]/g, '_');
    const r = await checkParity({ dir, source, format: 'vpc', options, checkable: false, tag });
    sizes.push(`${(options || 'dynamic').padEnd(30)} ${source.name.padEnd(22)} ${r.oursBytes} / ${r.theirsBytes}`);
  });
});

/** Builds an empty image of `size` bytes with our writer. */
async function createEmpty(name: string, size: number, options: Record<string, string> = {}): Promise<void> {
  const sink = await NodeFileSink.create(join(dir, name));
  try {
    const w = await vpcWriter.create(sink, { size, options: new Map(Object.entries(options)), compress: false }, () => {
      throw new Error('no extra sinks');
    });
    await w.finish();
  } catch (e) {
    await sink.abort();
    throw e;
  }
}

const footerOf = (name: string) => {
  const bytes = readFileSync(join(dir, name));
  return bytes.subarray(bytes.length - 512);
};
/** An image's bytes with the footers' time stamp, checksum and unique id (and the checksum they change) blanked. */
function masked(name: string): Buffer {
  const bytes = readFileSync(join(dir, name));
  const blank = (at: number) => {
    bytes.fill(0, at + 24, at + 28);
    bytes.fill(0, at + 64, at + 84);
  };
  blank(bytes.length - 512);
  if (bytes.readUInt32BE(bytes.length - 512 + 60) !== 2) blank(0);
  return bytes;
}
const creator = (footer: Uint8Array) => Buffer.from(footer.subarray(28, 32)).toString('latin1');

describe('vpc sizes', () => {
  // Both sides of each geometry regime's edges: 17, 31 and 63 sectors per track, 255 past 31.5 GiB, the CHS limit near 127 GiB.
  const edges = [0, 512, 1536, 1024 * 1024, 10485860, 1023 * 1024 * 1024 + 512, 2 ** 31, 2 ** 33 + 7 * 512, 65535 * 16 * 63 * 512 - 512, 65535 * 16 * 63 * 512, 65535 * 16 * 255 * 512 - 4096, 65535 * 16 * 255 * 512 + 512, 200 * 2 ** 30];
  it.each(edges.flatMap((s) => [[s, false], [s, true]] as const))('size %d force_size %s: the virtual size and geometry qemu-img create gives', async (size, force) => {
    const opts: Record<string, string> = force ? { force_size: 'on' } : {};
    const tag = `size-${size}-${force}`;
    await createEmpty(`${tag}.ours.vhd`, size, opts);
    ok('qemu-img create', qemuImg(['create', '-q', '-f', 'vpc', ...(force ? ['-o', 'force_size=on'] : []), `${tag}.qemu.vhd`, String(size)], { cwd: dir }));
    const info = (f: string) => JSON.parse(ok('info', qemuImg(['info', '--output=json', f], { cwd: dir }))) as Record<string, unknown>;
    const ours = info(`${tag}.ours.vhd`);
    const theirs = info(`${tag}.qemu.vhd`);
    expect(ours['virtual-size']).toBe(theirs['virtual-size']);
    expect(ours['cluster-size']).toBe(theirs['cluster-size']);
    // Byte for byte the same but for each footer's time stamp, checksum and unique id.
    expect(masked(`${tag}.ours.vhd`)).toEqual(masked(`${tag}.qemu.vhd`));
  });

  it('refuses what qemu-img refuses: over 2040 GiB', async () => {
    const q = qemuImg(['create', '-q', '-f', 'vpc', 'big.vhd', '2041G'], { cwd: dir });
    expect(q.status).not.toBe(0);
    await expect(createEmpty('big.ours.vhd', 2041 * 2 ** 30)).rejects.toThrow(qemuMessage(q.stderr));
    await expect(createEmpty('big2.ours.vhd', 2041 * 2 ** 30, { force_size: 'on' })).rejects.toThrow(qemuMessage(q.stderr));
  });

  it('every size rounds up to the smallest geometry that holds it, as the specification computes geometry', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 65535 * 16 * 255 - 1 }), (sectors) => {
        const s = vhdSize(sectors * 512, false)!;
        const g = s.geometry;
        const chs = g.cylinders * g.heads * g.sectorsPerTrack;
        if (chs === 65535 * 16 * 255) {
          // No geometry holds it: the largest one, and the size kept as asked.
          expect(s.sectors).toBe(sectors);
        } else {
          expect(s.sectors).toBe(chs);
          expect(s.sectors).toBeGreaterThanOrEqual(sectors);
          // qemu's rule: the geometry the specification computes for the first request at or above the size that holds it
          // (not always the geometry of the rounded size itself: 121738 sectors round to 896/8/17, whose own geometry is smaller).
          const product = (c: typeof g) => c.cylinders * c.heads * c.sectorsPerTrack;
          let t = sectors;
          while (product(chsFor(t)) < sectors) t++;
          expect(g).toEqual(chsFor(t));
          // The smallest: one sector less would not be reached by the geometry of any smaller request.
          if (sectors > 1) expect(vhdSize((sectors - 1) * 512, false)!.sectors).toBeLessThanOrEqual(s.sectors);
        }
      }),
      // 121738 sectors: a size whose rounded geometry is not that of the rounded size (qemu-img makes it 121856 sectors).
      { numRuns: 2000, examples: [[121738]] },
    );
  });
});

describe('vpc options', () => {
  it.each(['subformat=foo', 'force_size=maybe', 'force_size=1'])('-o %s fails with qemu-img\'s message', (o) => {
    const q = qemuImg(['convert', '-O', 'vpc', '-o', o, 'src.raw', 'bad.qemu.vhd'], { cwd: dir });
    const v = vdisk(['convert', '-O', 'vpc', '-o', o, 'src.raw', 'bad.ours.vhd'], { cwd: dir });
    expect(q.status).not.toBe(0);
    expect(v.status).not.toBe(0);
    expect(v.stderr).toContain(qemuMessage(q.stderr));
  });

  it('-o force_size=yes and =true mean on, as in qemu-img', () => {
    for (const o of ['force_size=yes', 'force_size=true']) {
      ok('vdisk convert', vdisk(['convert', '-O', 'vpc', '-o', o, 'src.raw', `${o}.vhd`], { cwd: dir }));
      expect(creator(footerOf(`${o}.vhd`))).toBe('qem2');
    }
  });

  it('-c and -B are refused as qemu-img refuses them', () => {
    const qc = qemuImg(['convert', '-c', '-O', 'vpc', 'src.raw', 'c.qemu.vhd'], { cwd: dir });
    const vc = vdisk(['convert', '-c', '-O', 'vpc', 'src.raw', 'c.ours.vhd'], { cwd: dir });
    expect(vc.status).not.toBe(0);
    expect(vc.stderr).toContain(qemuMessage(qc.stderr));
    const qb = qemuImg(['convert', '-B', 'src.raw', '-F', 'raw', '-O', 'vpc', 'src.raw', 'b.qemu.vhd'], { cwd: dir });
    const vb = vdisk(['convert', '-B', 'src.raw', '-F', 'raw', '-O', 'vpc', 'src.raw', 'b.ours.vhd'], { cwd: dir });
    expect(vb.status).not.toBe(0);
    expect(vb.stderr).toContain(qemuMessage(qb.stderr));
  });
});

describe('vpc azure preset', () => {
  it.each([0, 1, 3, 4])('source %i: a fixed disk of whole MiB, sized by Current Size, identical to the source', async (i) => {
    const source = sources[i]!;
    const tag = `azure-${source.file}`;
    const r = await checkParity({ dir, source, format: 'vpc', options: 'subformat=fixed', oursOnly: 'azure=on', checkable: false, tag });
    const info = JSON.parse(ok('info', qemuImg(['info', '-f', 'vpc', '--output=json', r.ours], { cwd: dir }))) as Record<string, number>;
    const srcInfo = JSON.parse(ok('info', qemuImg(['info', '-f', source.format, '--output=json', source.file], { cwd: dir }))) as Record<string, number>;
    const MiB = 1024 * 1024;
    expect(info['virtual-size']).toBe(Math.ceil(srcInfo['virtual-size']! / MiB) * MiB);
    const bytes = readFileSync(join(dir, r.ours));
    // Fixed: the data, then one footer; the footer says fixed (type 2) and Current Size.
    expect(bytes.length).toBe(info['virtual-size']! + 512);
    const footer = bytes.subarray(bytes.length - 512);
    expect(footer.readUInt32BE(60)).toBe(2);
    expect(creator(footer)).toBe('qem2');
    expect(Number(footer.readBigUInt64BE(48))).toBe(info['virtual-size']);
    sizes.push(`${'azure=on'.padEnd(30)} ${source.name.padEnd(22)} ${r.oursBytes} / ${r.theirsBytes} (qemu-img: subformat=fixed)`);
  });

  it('refuses a dynamic subformat or force_size=off with the preset', () => {
    for (const o of ['azure=on,subformat=dynamic', 'azure=on,force_size=off']) {
      const v = vdisk(['convert', '-O', 'vpc', '-o', o, 'src.raw', 'az-bad.vhd'], { cwd: dir });
      expect(v.status).not.toBe(0);
      expect(v.stderr).toMatch(/azure/);
    }
  });
});

describe('vpc builders', () => {
  it('round-trip through the reader\'s parsers', () => {
    const size = vhdSize(10 * 1024 * 1024, false)!;
    const footer = parseFooter(buildFooter({ diskType: 3, size, timestamp: 1, uniqueId: new Uint8Array(16) }), 'x', 0);
    expect(footer).toMatchObject({ diskType: 3, dataOffset: 512, currentSize: size.sectors * 512, creatorApp: 'qemu', ...size.geometry });
    const dyn = parseDynHeader(buildDynHeader(6, 2 * 1024 * 1024), 'x', 512);
    expect(dyn).toMatchObject({ tableOffset: 1536, maxTableEntries: 6, blockSize: 2 * 1024 * 1024, locators: [] });
  });
});
