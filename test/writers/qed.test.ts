// The QED writer against qemu-img: every source converted with every option
// set by both tools, and a backing chain converted over its base with -B
// (qcow2 and raw bases); option and size errors in qemu-img's words.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuImg, vdisk } from '../helpers/run.ts';
import { qedWriter } from '../../engine/drivers/qed/writer.ts';
import { buildHeader, maxImageSize } from '../../engine/drivers/qed/build.ts';
import { parseBackingName, parseHeader } from '../../engine/drivers/qed/header.ts';
import { NodeFileSink } from '../../cli/node-io.ts';
import { OVER_BACKING, checkParity, makeSources, ok, qemuMessage, type Source } from './parity.ts';

let dir: string;
let sources: Source[];
const sizes: string[] = [];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-wqed-'));
  sources = makeSources(dir);
  ok('qemu-img convert', qemuImg(['convert', '-O', 'raw', 'base.qcow2', 'base.raw'], { cwd: dir }));
});
afterAll(() => {
  if (sizes.length) console.log(`qed output, allocated bytes (ours / qemu-img's):\n${sizes.sort().join('\n')}`);
  rmSync(dir, { recursive: true, force: true });
});

const OPTION_SETS = ['', 'cluster_size=4k,table_size=2', 'cluster_size=1M', 'table_size=16'];

describe.each(OPTION_SETS)('qed -o "%s"', (options) => {
  const record = (source: Source, r: { oursBytes: number; theirsBytes: number }) =>
    sizes.push(`${(options || 'default').padEnd(30)} ${source.name.padEnd(28)} ${r.oursBytes} / ${r.theirsBytes}`);
  const tagOf = (source: Source, extra = '') => `${source.file}${extra}-${options || 'default'}`.replace(/[=,]/g, '_');

  it.concurrent.each([0, 1, 2, 3, 4, 5, 6])('converts source %i as qemu-img does', async (i) => {
    const source = sources[i]!;
    record(source, await checkParity({ dir, source, format: 'qed', options, checkable: true, tag: tagOf(source) }));
  });

  it.concurrent('converts a chain over its qcow2 base with -B', async () => {
    record(OVER_BACKING, await checkParity({ dir, source: OVER_BACKING, format: 'qed', options, checkable: true, tag: tagOf(OVER_BACKING, '-B') }));
  });

  it.concurrent('converts a chain over a raw base with -B -F raw: the "raw, no probe" flag', async () => {
    const source: Source = { ...OVER_BACKING, name: 'chain over raw base', backing: { file: 'base.raw', format: 'raw' } };
    const r = await checkParity({ dir, source, format: 'qed', options, checkable: true, tag: tagOf(source, '-Braw') });
    record(source, r);
    const features = readFileSync(join(dir, r.ours)).readUInt32LE(16);
    expect(features).toBe(0x05);
  });
});

async function createEmpty(name: string, size: number, options: Record<string, string> = {}): Promise<void> {
  const sink = await NodeFileSink.create(join(dir, name));
  try {
    const w = await qedWriter.create(sink, { size, options: new Map(Object.entries(options)), compress: false }, () => {
      throw new Error('no extra sinks');
    });
    await w.finish();
  } catch (e) {
    await sink.abort();
    throw e;
  }
}

describe('qed options', () => {
  const shapes: Record<string, string>[] = [{}, { cluster_size: '4k', table_size: '2' }, { cluster_size: '1M', table_size: '16' }, { table_size: '8' }];
  it.each(shapes)('-o %j: an empty image byte for byte as qemu-img create makes it', async (options) => {
    const tag = `empty-${Object.values(options).join('_')}`;
    await createEmpty(`${tag}.ours.qed`, 10 * 1024 * 1024, options);
    const o = Object.entries(options).map(([k, v]) => `${k}=${v}`);
    ok('qemu-img create', qemuImg(['create', '-q', '-f', 'qed', ...(o.length ? ['-o', o.join(',')] : []), `${tag}.qemu.qed`, '10M'], { cwd: dir }));
    ok('qemu-img check', qemuImg(['check', `${tag}.ours.qed`], { cwd: dir }));
    expect(readFileSync(join(dir, `${tag}.ours.qed`)).equals(readFileSync(join(dir, `${tag}.qemu.qed`)))).toBe(true);
    rmSync(join(dir, `${tag}.ours.qed`));
    rmSync(join(dir, `${tag}.qemu.qed`));
  });

  const bad: [number, Record<string, string>][] = [
    [10 * 1024 * 1024, { cluster_size: '3000' }],
    [10 * 1024 * 1024, { cluster_size: '2K' }],
    [10 * 1024 * 1024, { cluster_size: '128M' }],
    [10 * 1024 * 1024, { table_size: '3' }],
    [10 * 1024 * 1024, { table_size: '32' }],
    [10 * 1024 * 1024, { table_size: '0' }],
    [4 * 1024 ** 3 + 512, { cluster_size: '4k', table_size: '2' }],
    // qemu's 64-bit limit wraps to 0 for the largest tables: it refuses, and could not open, any such image.
    [10 * 1024 * 1024, { cluster_size: '64M', table_size: '16' }],
    [10 * 1024 * 1024, { cluster_size: '2M', table_size: '16' }],
  ];
  it.each(bad)('size %d -o %j is refused with qemu-img\'s message', async (size, options) => {
    const o = Object.entries(options).map(([k, v]) => `${k}=${v}`);
    const q = qemuImg(['create', '-q', '-f', 'qed', '-o', o.join(','), 'bad.qemu.qed', String(size)], { cwd: dir });
    expect(q.status).not.toBe(0);
    await expect(createEmpty('bad.ours.qed', size, options)).rejects.toThrow(qemuMessage(q.stderr));
  });

  it('table_size=1: refused, because qemu-img cannot open what it would make', async () => {
    ok('qemu-img create', qemuImg(['create', '-q', '-f', 'qed', '-o', 'table_size=1', 't1.qemu.qed', '10M'], { cwd: dir }));
    expect(qemuImg(['info', 't1.qemu.qed'], { cwd: dir }).status).not.toBe(0);
    await expect(createEmpty('t1.ours.qed', 10 * 1024 * 1024, { table_size: '1' })).rejects.toThrow(/table size 1/);
  });

  it('-c is refused', () => {
    expect(vdisk(['convert', '-c', '-O', 'qed', 'src.raw', 'c.qed'], { cwd: dir }).status).not.toBe(0);
  });
});

describe('qed builders', () => {
  it('round-trip through the reader\'s parsers', () => {
    const name = new TextEncoder().encode('base.raw');
    const bytes = buildHeader({ clusterSize: 65536, tableSize: 4, headerSize: 1, l1TableOffset: 65536, imageSize: 10485760, backing: { name, rawNoProbe: true } });
    const h = parseHeader(bytes, 5 * 65536, 'x');
    expect(h).toMatchObject({ clusterSize: 65536, tableSize: 4, headerSize: 1, l1TableOffset: 65536, imageSize: 10485760, features: 5, backingName: { offset: 64, size: 8 } });
    expect(parseBackingName(bytes.subarray(64, 72))).toBe('base.raw');
    expect(maxImageSize(4096, 2)).toBe(4 * 1024 ** 3);
    expect(maxImageSize(64 * 1024 * 1024, 16)).toBe(0);
  });
});
