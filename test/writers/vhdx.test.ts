// The VHDX writer against qemu-img: every source converted with every option
// set by both tools; the block size chosen for each disk size and the
// rounding of block_size and log_size equal to qemu-img create's; the BAT
// states each subformat leaves; option errors in qemu-img's words.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuImg, run, vdisk } from '../helpers/run.ts';
import { vhdxWriter } from '../../engine/drivers/vhdx/writer.ts';
import { buildHeader, buildMetadata, buildRegionTable, guidBytes, planLayout, randomGuid } from '../../engine/drivers/vhdx/build.ts';
import { ZERO_GUID, checkHeader, checkRegionTable, parseMetadataTable, parseRegionTable } from '../../engine/drivers/vhdx/header.ts';
import { NodeFileSink } from '../../cli/node-io.ts';
import { checkParity, makeSources, ok, qemuMessage, type Source } from './parity.ts';

let dir: string;
let sources: Source[];
const sizes: string[] = [];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-wvhdx-'));
  sources = makeSources(dir);
});
afterAll(() => {
  if (sizes.length) console.log(`vhdx output, allocated bytes (ours / qemu-img's):\n${sizes.sort().join('\n')}`);
  rmSync(dir, { recursive: true, force: true });
});

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

const OPTION_SETS = ['', 'subformat=fixed', 'block_size=1M', 'block_state_zero=off', 'subformat=fixed,block_size=32M,log_size=2M'];

describe.each(OPTION_SETS)('vhdx -o "%s"', (options) => {
  it.concurrent.each([0, 1, 2, 3, 4, 5, 6])('converts source %i as qemu-img does', async (i) => {
    const source = sources[i]!;
    const tag = `${source.file}-${options || 'default'}`.replace(/[=,]/g, '_');
    const r = await checkParity({ dir, source, format: 'vhdx', options, checkable: true, tag });
    sizes.push(`${(options || 'dynamic').padEnd(44)} ${source.name.padEnd(22)} ${r.oursBytes} / ${r.theirsBytes}`);
  });
});

async function createEmpty(name: string, size: number, options: Record<string, string> = {}): Promise<void> {
  const sink = await NodeFileSink.create(join(dir, name));
  try {
    const w = await vhdxWriter.create(sink, { size, options: new Map(Object.entries(options)), compress: false }, () => {
      throw new Error('no extra sinks');
    });
    await w.finish();
  } catch (e) {
    await sink.abort();
    throw e;
  }
}

function bytesAt(name: string, offset: number, length: number): Buffer {
  const fd = openSync(join(dir, name), 'r');
  try {
    const out = Buffer.alloc(length);
    readSync(fd, out, 0, length, offset);
    return out;
  } finally {
    closeSync(fd);
  }
}

const info = (name: string) => JSON.parse(ok('qemu-img info', qemuImg(['info', '-f', 'vhdx', '--output=json', name], { cwd: dir }))) as Record<string, unknown>;
/** The log length in the first header. */
const logLength = (name: string) => bytesAt(name, 64 * 1024 + 68, 4).readUInt32LE(0);

describe('vhdx sizes and options', () => {
  const cases: [number, Record<string, string>][] = [
    [10 * MiB, {}],
    [GiB, {}],
    [GiB + 512, {}],
    [100 * GiB, {}],
    [100 * GiB + 512, {}],
    [32 * TiB, {}],
    [32 * TiB + 512, {}],
    [64 * TiB, { block_size: '256M' }],
    [10000000, {}],
    [10 * MiB, { block_size: '3' }],
    [10 * MiB, { block_size: '768K' }],
    [10 * MiB, { block_size: '300M' }],
    [10 * MiB, { block_size: '0' }],
    [10 * MiB, { log_size: '1500K' }],
    [10 * MiB, { log_size: '5000000' }],
    [10 * MiB, { log_size: '1' }],
  ];
  it.each(cases)('size %d -o %j: the block size, virtual size and log size of qemu-img create', async (size, options) => {
    const tag = `empty-${size}-${Object.values(options).join('_')}`;
    await createEmpty(`${tag}.ours.vhdx`, size, options);
    const o = Object.entries(options).map(([k, v]) => `${k}=${v}`);
    ok('qemu-img create', qemuImg(['create', '-q', '-f', 'vhdx', ...(o.length ? ['-o', o.join(',')] : []), `${tag}.qemu.vhdx`, String(size)], { cwd: dir }));
    ok('qemu-img check', qemuImg(['check', `${tag}.ours.vhdx`], { cwd: dir }));
    const ours = info(`${tag}.ours.vhdx`);
    const theirs = info(`${tag}.qemu.vhdx`);
    expect(ours['virtual-size']).toBe(theirs['virtual-size']);
    expect(ours['cluster-size']).toBe(theirs['cluster-size']);
    expect(logLength(`${tag}.ours.vhdx`)).toBe(logLength(`${tag}.qemu.vhdx`));
    rmSync(join(dir, `${tag}.ours.vhdx`));
    rmSync(join(dir, `${tag}.qemu.vhdx`));
  });

  const bad: [number, Record<string, string>][] = [
    [10 * MiB, { block_size: '3M' }],
    [10 * MiB, { log_size: '0' }],
    [10 * MiB, { log_size: '4G' }],
    [10 * MiB, { subformat: 'foo' }],
    [10 * MiB, { block_state_zero: 'maybe' }],
    [65 * TiB, {}],
  ];
  it.each(bad)('size %d -o %j is refused with qemu-img\'s message', async (size, options) => {
    const o = Object.entries(options).map(([k, v]) => `${k}=${v}`);
    const q = qemuImg(['create', '-q', '-f', 'vhdx', ...(o.length ? ['-o', o.join(',')] : []), 'bad.qemu.vhdx', String(size)], { cwd: dir });
    expect(q.status).not.toBe(0);
    await expect(createEmpty('bad.ours.vhdx', size, options)).rejects.toThrow(qemuMessage(q.stderr));
  });

  it('-c and -B are refused', () => {
    expect(vdisk(['convert', '-c', '-O', 'vhdx', 'src.raw', 'c.vhdx'], { cwd: dir }).status).not.toBe(0);
    expect(vdisk(['convert', '-B', 'src.raw', '-F', 'raw', '-O', 'vhdx', 'src.raw', 'b.vhdx'], { cwd: dir }).status).not.toBe(0);
  });
});

describe('vhdx BAT states', () => {
  /** Payload entries (state, offset in MiB) of a disk with 8 MiB blocks, whose BAT starts at 2 MiB. */
  const payload = (name: string, blocks: number) => {
    const bat = bytesAt(name, 2 * MiB, blocks * 8);
    return Array.from({ length: blocks }, (_, i): [number, number] => {
      const e = bat.readBigUInt64LE(i * 8);
      return [Number(e & 7n), Number(e >> 20n)];
    });
  };

  it('fixed: every block present, in order, right after the metadata', () => {
    ok('vdisk convert', vdisk(['convert', '-O', 'vhdx', '-o', 'subformat=fixed', 'src.raw', 'st-fixed.vhdx'], { cwd: dir }));
    // 13 MiB in 8 MiB blocks; the metadata region is at 3 MiB, so data starts at 4 MiB.
    expect(payload('st-fixed.vhdx', 2)).toEqual([
      [6, 4],
      [6, 12],
    ]);
  });

  it('dynamic: written blocks present in the order written, the others ZERO, or NOT_PRESENT with block_state_zero=off', () => {
    ok('vdisk convert', vdisk(['convert', '-O', 'vhdx', '-o', 'block_size=1M', 'src.raw', 'st-dyn.vhdx'], { cwd: dir }));
    const states = payload('st-dyn.vhdx', 13).map(([s]) => s);
    // Data in MiB 0, 1 (text), 2 (text), 4, 6, 9, 12; MiB 3 holds text too.
    expect(states).toEqual([6, 6, 6, 6, 6, 2, 6, 2, 2, 6, 2, 2, 6]);
    const offsets = payload('st-dyn.vhdx', 13).filter(([s]) => s === 6).map(([, o]) => o);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    ok('vdisk convert', vdisk(['convert', '-O', 'vhdx', '-o', 'block_size=1M,block_state_zero=off', 'src.raw', 'st-dyn0.vhdx'], { cwd: dir }));
    expect(payload('st-dyn0.vhdx', 13).map(([s]) => s)).toEqual(states.map((s) => (s === 2 ? 0 : s)));
  });
});

describe('vhdx past the first chunk', () => {
  it('places blocks after each chunk\'s sector bitmap entry, as qemu-img reads them', async () => {
    // 1 MiB blocks: a chunk (2^23 sectors, 4 GiB) holds 4096 blocks, then comes a sector bitmap entry.
    ok('qemu-img create', qemuImg(['create', '-q', '-f', 'qcow2', 'wide.qcow2', '9G'], { cwd: dir }));
    ok('qemu-io', run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x51 0 64k', '-c', `write -P 0x52 ${4 * GiB - 4096} 8k`, '-c', `write -P 0x53 ${8 * GiB + MiB} 4k`, 'wide.qcow2'], { cwd: dir }));
    const source: Source = { name: 'wide qcow2', file: 'wide.qcow2', format: 'qcow2' };
    const r = await checkParity({ dir, source, format: 'vhdx', options: 'block_size=1M', checkable: true, tag: 'wide' });
    sizes.push(`${'block_size=1M'.padEnd(44)} ${source.name.padEnd(22)} ${r.oursBytes} / ${r.theirsBytes}`);
    // Block 4096 (at 4 GiB) is BAT entry 4097: entry 4096 is chunk 0's sector bitmap, not present.
    const entry = (i: number) => bytesAt(r.ours, 2 * MiB + i * 8, 8).readBigUInt64LE(0) & 7n;
    expect([entry(4095), entry(4096), entry(4097), entry(2 * 4097 + 1)]).toEqual([6n, 0n, 6n, 6n]);
  });
});

describe('vhdx builders', () => {
  it('round-trip through the reader\'s parsers', () => {
    const layout = planLayout(10 * MiB, 8 * MiB, MiB);
    const guid = randomGuid();
    const header = checkHeader(buildHeader({ sequenceNumber: 7, fileWriteGuid: guid, dataWriteGuid: guid, layout }), 0);
    expect(typeof header).toBe('object');
    expect(header).toMatchObject({ sequenceNumber: 7n, logGuid: ZERO_GUID, logLength: MiB, logOffset: MiB });
    const table = buildRegionTable(layout);
    expect(checkRegionTable(table)).toBeUndefined();
    expect(parseRegionTable(table, 'x', 0)).toMatchObject({ bat: { fileOffset: 2 * MiB, length: MiB }, metadata: { fileOffset: 3 * MiB, length: MiB } });
    const metadata = buildMetadata(layout, true, randomGuid());
    const items = parseMetadataTable(metadata, 'x', 0, MiB);
    expect(items.size).toBe(5);
    expect(guidBytes('2dc27766-f623-4200-9d64-115e9bfd4a08')).toEqual(Uint8Array.from([0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08]));
  });
});
