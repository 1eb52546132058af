// Cycles and aliasing, built on purpose, each refused with a clear typed
// error that names the file, the structure and the offset: backing chains
// that loop (A → A, A → B → A, across formats, through another spelling of a
// name), a VMDK extent that is its own descriptor, tables and data clusters
// pointing into the header or the image's own tables, refcount and L1 tables
// that overlap, a BAT entry past the end of the file, and size fields that
// imply petabytes of tables. qemu-img reads some of these (it hangs on some
// loops and reads metadata as guest data where tables alias); vdisk refuses.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeRun, qemuImg, run, type RunResult } from '../helpers/run.ts';
import { ensureFixtures, FIXTURES_DIR } from '../helpers/fixtures.ts';
import { EngineApi } from '../../engine/api.ts';
import { BackingChainError, BackingLoopError, ImageFormatError, OpenError, VDiskError } from '../../engine/errors.ts';
import type { ByteSink } from '../../engine/io/sink.ts';
import { nodeWorkspace } from '../../cli/node-io.ts';

let dir: string;
const api = new EngineApi(nodeWorkspace);
const at = (name: string) => join(dir, name);
const ok = (label: string, r: RunResult) => expect(r.status, describeRun(label, r)).toBe(0);
const create = (...args: string[]) => ok('qemu-img create', qemuImg(['create', '-q', ...args], { cwd: dir }));
const rebase = (file: string, backing: string, fmt: string) => ok('qemu-img rebase', qemuImg(['rebase', '-u', '-b', backing, '-F', fmt, file], { cwd: dir }));
const qemuIo = (fmt: string, file: string, ...cmds: string[]) => ok('qemu-io', run('qemu-io', ['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), file], { cwd: dir }));

beforeAll(() => {
  ensureFixtures();
  dir = mkdtempSync(join(tmpdir(), 'vdisk-hostile-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The innermost engine error: what OpenError and BackingChainError wrap. */
function innermost(e: unknown): unknown {
  let inner = e;
  while (inner instanceof OpenError || inner instanceof BackingChainError) inner = inner.inner;
  return inner;
}

/** Awaits `op`, which must fail with an engine error whose innermost cause is a `type`; returns that cause. */
async function refused<T extends VDiskError>(op: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  const outcome = await op.then(
    () => new Error('it did not fail'),
    (e: unknown) => e,
  );
  expect(outcome).toBeInstanceOf(VDiskError);
  const inner = innermost(outcome);
  expect(inner, String(outcome)).toBeInstanceOf(type);
  return inner as T;
}

/** Discards what it is given: a whole read of the image without writing it anywhere. */
const nullSink = (name: string): ByteSink => ({ name, write: async () => {}, commit: async () => {}, abort: async () => {} });
const readAll = (name: string) => api.convert({ name, outFormat: 'raw' }, { name: '/dev/null', sink: nullSink('/dev/null'), openSink: async (n) => nullSink(n) });

/** Every operation that opens the chain or reads the image fails with `type`. */
async function everyOperationRefuses<T extends VDiskError>(name: string, type: new (...args: never[]) => T): Promise<T> {
  const e = await refused(api.map({ name }), type);
  await refused(readAll(name), type);
  await refused(api.compare({ name }, { name }), type);
  return e;
}

describe('backing chains that loop', () => {
  it('A → A', async () => {
    create('-f', 'qcow2', 'self.qcow2', '1M');
    rebase('self.qcow2', 'self.qcow2', 'qcow2');
    const e = await everyOperationRefuses(at('self.qcow2'), BackingLoopError);
    expect(e.message).toMatch(/self\.qcow2' creates an infinite loop/);
    await refused(api.info({ name: at('self.qcow2'), backingChain: true }), BackingLoopError);
  });

  it('A → B → A', async () => {
    create('-f', 'qcow2', 'a.qcow2', '1M');
    create('-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', 'b.qcow2');
    rebase('a.qcow2', 'b.qcow2', 'qcow2');
    const e = await everyOperationRefuses(at('b.qcow2'), BackingLoopError);
    expect(e.message).toMatch(/b\.qcow2 -> .*a\.qcow2 -> b\.qcow2/);
    await refused(api.info({ name: at('b.qcow2'), backingChain: true }), BackingLoopError);
  });

  it('across formats, and back through another spelling of the name', async () => {
    create('-f', 'qcow2', 'x.qcow2', '1M');
    create('-f', 'qed', '-b', 'x.qcow2', '-F', 'qcow2', 'y.qed');
    create('-f', 'qcow2', '-b', 'y.qed', '-F', 'qed', 'z.qcow2');
    mkdirSync(at('sub'));
    rebase('x.qcow2', './sub/../z.qcow2', 'qcow2');
    await everyOperationRefuses(at('z.qcow2'), BackingLoopError);
    await everyOperationRefuses(at('x.qcow2'), BackingLoopError);
  });
});

describe('a VMDK extent that names its own descriptor', () => {
  const descriptor = (extent: string) =>
    `# Disk DescriptorFile\nversion=1\nCID=2bd7a5c1\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n# Extent description\n${extent}\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = "ide"\n`;

  it.each([
    ['a sparse extent', 'RW 2048 SPARSE "own.vmdk"'],
    ['a flat extent, named another way', 'RW 2048 FLAT "./own.vmdk" 0'],
  ])('%s', async (_label, line) => {
    writeFileSync(at('own.vmdk'), descriptor(line));
    const e = await everyOperationRefuses(at('own.vmdk'), ImageFormatError);
    expect(e.message).toMatch(/is the descriptor itself/);
    expect(e.file).toContain('own.vmdk');
  });
});

/** Big-endian and little-endian u64 pokes into a copy of a file. */
function patched(from: string, to: string, poke: (v: DataView) => void): string {
  const bytes = new Uint8Array(readFileSync(at(from)));
  poke(new DataView(bytes.buffer));
  writeFileSync(at(to), bytes);
  return at(to);
}
const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;
const COPIED = 1n << 63n;

describe('tables and data clusters that point into the header or the tables', () => {
  let l1: number;
  let reftable: number;
  let l2: number;
  beforeAll(() => {
    create('-f', 'qcow2', 'base.qcow2', '4M');
    qemuIo('qcow2', 'base.qcow2', 'write -P 1 0 128k', 'write -c -P 2 1M 64k');
    const v = new DataView(new Uint8Array(readFileSync(at('base.qcow2'))).buffer);
    l1 = Number(v.getBigUint64(40));
    reftable = Number(v.getBigUint64(48));
    l2 = Number(v.getBigUint64(l1) & OFFSET_MASK);
  });

  const cases: [string, (v: DataView) => void, string, RegExp][] = [
    ['an L2 table in the header cluster', (v) => v.setBigUint64(l1, COPIED | 0x200n), 'L1 table', /unaligned/],
    ['an L2 table at the refcount table', (v) => v.setBigUint64(l1, COPIED | BigInt(reftable)), 'L2 table', /overlaps the refcount table/],
    ['an L2 table at the L1 table', (v) => v.setBigUint64(l1, COPIED | BigInt(l1)), 'L2 table', /overlaps the active L1 table/],
    ['a data cluster in the header cluster', (v) => v.setBigUint64(l2 + 8, COPIED | 0x200n), 'L2 table', /unaligned/],
    ['a data cluster at the L1 table', (v) => v.setBigUint64(l2 + 8, COPIED | BigInt(l1)), 'L2 table', /data cluster at 0x[0-9a-f]+ overlaps the active L1 table/],
    ['a data cluster at the refcount table', (v) => v.setBigUint64(l2, COPIED | BigInt(reftable)), 'L2 table', /overlaps the refcount table/],
    ['a compressed cluster in the header', (v) => v.setBigUint64(l2 + 16 * 8, (1n << 62n) | 0x100n), 'L2 table', /compressed cluster at 0x100 lies in the header/],
  ];
  it.each(cases)('qcow2: %s', async (label, poke, structure, detail) => {
    const name = patched('base.qcow2', `${label.replace(/\W+/g, '-')}.qcow2`, poke);
    const e = await refused(api.map({ name }), ImageFormatError);
    expect(e.structure).toBe(structure);
    expect(e.message).toMatch(detail);
    await refused(readAll(name), ImageFormatError);
  });

  it('qed: an L2 table and a data cluster at the L1 table', async () => {
    create('-f', 'qed', 'base.qed', '4M');
    qemuIo('qed', 'base.qed', 'write -P 1 0 128k');
    const v = new DataView(new Uint8Array(readFileSync(at('base.qed'))).buffer);
    const qedL1 = Number(v.getBigUint64(40, true));
    const qedL2 = Number(v.getBigUint64(qedL1, true));
    const table = patched('base.qed', 'qed-l2-at-l1.qed', (w) => w.setBigUint64(qedL1, BigInt(qedL1), true));
    expect((await refused(api.map({ name: table }), ImageFormatError)).message).toMatch(/L2 table at 0x[0-9a-f]+ overlaps the L1 table/);
    const data = patched('base.qed', 'qed-data-at-l1.qed', (w) => w.setBigUint64(qedL2 + 8, BigInt(qedL1), true));
    expect((await refused(readAll(data), ImageFormatError)).message).toMatch(/data cluster at 0x[0-9a-f]+ overlaps the L1 table/);
  });

  it('vhdx: a BAT entry naming the header region, and one naming the BAT itself', async () => {
    create('-f', 'vhdx', '-o', 'block_size=1M', 'base.vhdx', '8M');
    qemuIo('vhdx', 'base.vhdx', 'write -P 1 0 1M');
    const v = new DataView(new Uint8Array(readFileSync(at('base.vhdx'))).buffer);
    const bat = Number(v.getBigUint64(192 * 1024 + 32, true));
    const fullyPresent = 6n;
    for (const [name, mb] of [['bat-in-header.vhdx', 0n], ['bat-in-bat.vhdx', BigInt(bat >> 20)]] as const) {
      const file = patched('base.vhdx', name, (w) => w.setBigUint64(bat, (mb << 20n) | fullyPresent, true));
      const e = await refused(api.map({ name: file }), ImageFormatError);
      expect(e.structure).toBe('BAT');
      expect(e.offset).toBe(bat);
      expect(e.message).toMatch(/overlaps the metadata/);
    }
  });
});

describe('overlapping refcount tables', () => {
  it.each([
    ['the refcount table over the L1 table', 'rt-over-l1', (v: DataView) => v.setBigUint64(48, v.getBigUint64(40)), /the refcount table .* overlaps the active L1 table/],
    ['the refcount table over the header', 'rt-over-header', (v: DataView) => v.setBigUint64(48, 0n), /overlaps the header/],
    ['the L1 table inside the refcount table', 'l1-in-rt', (v: DataView) => v.setBigUint64(40, v.getBigUint64(48)), /overlaps the refcount table|overlaps the active L1 table/],
  ])('qcow2: %s, refused on open (check still reports it)', async (_label, name, poke, detail) => {
    create('-f', 'qcow2', 'rt-base.qcow2', '4M');
    const file = patched('rt-base.qcow2', `${name}.qcow2`, poke);
    const e = await refused(api.info({ name: file }), ImageFormatError);
    expect(e.structure).toBe('qcow2 header');
    expect(e.message).toMatch(detail);
    // Opened to be checked, the image opens, and check reports the damage as qemu-img check does.
    const q = qemuImg(['check', '--output=json', file]);
    const report = await api.check({ name: file });
    expect(report.result.corruptions + report.result.checkErrors).toBeGreaterThan(0);
    expect(q.status).not.toBe(0);
  });
});

describe('a BAT entry past the end of the file', () => {
  it.each([
    ['vhdx', 'vhdx/errors/bat-entry-past-eof.vhdx'],
    ['vpc', 'vpc/errors/block-past-eof.vhd'],
    ['vdi', 'vdi/errors/block-past-eof.vdi'],
    ['parallels', 'parallels/errors/cluster-past-eof.prl'],
  ])('%s', async (_format, file) => {
    const name = join(FIXTURES_DIR, file);
    const e = await refused(readAll(name), ImageFormatError);
    expect(e.file).toBe(name);
    expect(e.offset).toBeTypeOf('number');
    expect(e.message).toMatch(/past the end|truncated|runs past/i);
  });
});

describe('a size field implying petabytes of tables', () => {
  it('qcow2: a 1 EiB disk with the L1 table that needs, refused before anything is allocated', async () => {
    create('-f', 'qcow2', 'small.qcow2', '1M');
    const file = patched('small.qcow2', 'exa.qcow2', (v) => {
      v.setBigUint64(24, 1n << 60n);
      // 512 MiB per L1 entry: 2^31 entries, a 16 GiB L1 table.
      v.setUint32(36, 2 ** 31);
    });
    const e = await refused(api.info({ name: file }), ImageFormatError);
    expect(e.structure).toBe('qcow2 header');
    expect(e.offset).toBe(36);
    expect(e.message).toMatch(/L1 table too large/);
  });

  it.each([
    ['qcow2', 'errors/l1-size-huge.qcow2'],
    ['qcow', 'qcow/errors/size-huge.qcow'],
    ['qed', 'qed/errors/table-size-huge.qed'],
    ['vdi', 'vdi/errors/blocks-absurd.vdi'],
    ['vpc', 'vpc/errors/bat-entries-absurd.vhd'],
    ['vhdx', 'vhdx/errors/disk-size-huge.vhdx'],
    ['parallels', 'parallels/errors/bat-huge.prl'],
  ])('%s', async (_format, file) => {
    const name = join(FIXTURES_DIR, file);
    const before = process.memoryUsage().arrayBuffers;
    const e = await refused(readAll(name), VDiskError);
    expect(e.file).toBe(name);
    // Refused from the header's numbers, not after allocating what they claim.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(256 * 1024 * 1024);
  });
});
