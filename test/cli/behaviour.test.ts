// How vdisk behaves beyond matching qemu-img's output: bounded memory on huge
// sparse images, sparse raw output, no half-written output on failure, and
// inputs left untouched. Images are made here with qemu-img and qemu-io.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, openSync, readdirSync, readSync, rmSync, statSync, writeSync, closeSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeRun, hashFile, qemuImg, run, ROOT, VDISK, vdisk } from '../helpers/run.ts';

let dir: string;
const ok = (label: string, r: ReturnType<typeof run>) => expect(r.status, describeRun(label, r)).toBe(0);
const qemuIo = (args: string[]) => ok('qemu-io', run('qemu-io', args, { cwd: dir }));

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-behaviour-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs vdisk and returns its result with the peak RSS it reported. */
function vdiskWithRss(args: string[]): { r: ReturnType<typeof run>; peakMiB: number } {
  const r = run(process.execPath, ['--import', join(ROOT, 'test/helpers/peak-rss.mjs'), VDISK, ...args], { cwd: dir });
  const m = /PEAK_RSS_KIB (\d+)/.exec(r.stderr);
  return { r, peakMiB: m ? Number(m[1]) / 1024 : Infinity };
}

describe('a 16 TiB sparse qcow2', () => {
  beforeAll(() => {
    ok('create', qemuImg(['create', '-q', '-f', 'qcow2', 'huge.qcow2', '16T'], { cwd: dir }));
    qemuIo(['-c', 'write -P 0x5a 0 64k', '-c', 'write -P 0xa5 8T 1M', '-c', 'write -P 0x33 16383G 64k', 'huge.qcow2']);
  });

  it('maps like qemu-img without memory in proportion to its size', () => {
    const { r, peakMiB } = vdiskWithRss(['map', '--output=json', 'huge.qcow2']);
    ok('vdisk map', r);
    expect(r.stdout).toBe(qemuImg(['map', '--output=json', 'huge.qcow2'], { cwd: dir }).stdout);
    expect(peakMiB).toBeLessThan(200);
  });

  it('reports info with bounded memory', () => {
    const { r, peakMiB } = vdiskWithRss(['info', '--output=json', 'huge.qcow2']);
    ok('vdisk info', r);
    expect(JSON.parse(r.stdout)['virtual-size']).toBe(16 * 2 ** 40);
    expect(peakMiB).toBeLessThan(200);
  });
});

describe('convert -O raw', () => {
  beforeAll(() => {
    ok('create', qemuImg(['create', '-q', '-f', 'qcow2', 'sparse.qcow2', '256M'], { cwd: dir }));
    qemuIo(['-c', 'write -P 0x11 1M 1M', '-c', 'write -z 8M 1M', '-c', 'write -P 0 20M 1M', 'sparse.qcow2']);
  });

  it('writes a sparse file with the same bytes as qemu-img', async () => {
    ok('vdisk convert', vdisk(['convert', '-O', 'raw', 'sparse.qcow2', 'v.raw'], { cwd: dir }));
    ok('qemu convert', qemuImg(['convert', '-O', 'raw', 'sparse.qcow2', 'q.raw'], { cwd: dir }));
    expect(await hashFile(join(dir, 'v.raw'))).toBe(await hashFile(join(dir, 'q.raw')));
    const st = statSync(join(dir, 'v.raw'));
    expect(st.size).toBe(256 * 2 ** 20);
    // Only the 1 MiB of non-zero data takes space; written zeros are skipped too.
    expect(st.blocks * 512).toBeLessThanOrEqual(2 * 2 ** 20);
  });

  it('leaves no file under the final name, and no temporary, when it fails part-way', () => {
    ok('create', qemuImg(['create', '-q', '-f', 'qcow2', 'broken.qcow2', '64M'], { cwd: dir }));
    qemuIo(['-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x22 40M 64k', 'broken.qcow2']);
    // Point the L2 entry of the cluster at 40 MiB to an unaligned host offset.
    const path = join(dir, 'broken.qcow2');
    const fd = openSync(path, 'r+');
    const head = Buffer.alloc(48);
    readSync(fd, head, 0, 48, 0);
    const l1 = Number(head.readBigUInt64BE(40));
    const l1e = Buffer.alloc(8);
    readSync(fd, l1e, 0, 8, l1);
    const l2 = Number(l1e.readBigUInt64BE(0) & 0x00fffffffffffe00n);
    const bad = Buffer.alloc(8);
    bad.writeBigUInt64BE(0x8000000000010200n);
    writeSync(fd, bad, 0, 8, l2 + (40 * 2 ** 20 / 65536) * 8);
    closeSync(fd);
    const before = readdirSync(dir).length;

    const r = vdisk(['convert', '-O', 'raw', 'broken.qcow2', 'out.raw'], { cwd: dir });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/broken\.qcow2/);
    expect(r.stderr).toMatch(/unaligned/);
    expect(existsSync(join(dir, 'out.raw'))).toBe(false);
    expect(readdirSync(dir).length).toBe(before);
  });

  it('never modifies its input', async () => {
    const path = join(dir, 'sparse.qcow2');
    const before = await hashFile(path);
    for (const args of [['info', 'sparse.qcow2'], ['map', 'sparse.qcow2'], ['convert', '-O', 'raw', 'sparse.qcow2', 'again.raw']]) {
      ok(args.join(' '), vdisk(args, { cwd: dir }));
    }
    expect(await hashFile(path)).toBe(before);
  });
});

describe('human sizes', () => {
  // Sizes whose three significant digits end in an exact tie, where printf rounds to even.
  it.each([786944, 787456, 1023 * 1024, 1000 * 1024, 999 * 1024 + 512, 1536, 0])('%d bytes print as qemu-img prints them', (size) => {
    ok('create', qemuImg(['create', '-q', '-f', 'raw', `size-${size}.raw`, String(size)], { cwd: dir }));
    const line = (out: string) => out.split('\n').find((l) => l.startsWith('virtual size:'));
    const v = vdisk(['info', `size-${size}.raw`], { cwd: dir });
    expect(line(v.stdout)).toBe(line(qemuImg(['info', `size-${size}.raw`], { cwd: dir }).stdout));
  });
});

describe('bad input', () => {
  it('treats a file no driver recognises as raw, as qemu-img does', () => {
    const fd = openSync(join(dir, 'noise.bin'), 'w');
    writeSync(fd, Buffer.from('this is not a disk image, just some text\n'.repeat(100)));
    closeSync(fd);
    const v = vdisk(['info', '--output=json', 'noise.bin'], { cwd: dir });
    ok('vdisk info', v);
    expect(JSON.parse(v.stdout).format).toBe('raw');
    expect(JSON.parse(v.stdout)['virtual-size']).toBe(JSON.parse(qemuImg(['info', '--output=json', 'noise.bin'], { cwd: dir }).stdout)['virtual-size']);
  });

  it('reports a missing file as qemu-img does', () => {
    const v = vdisk(['info', 'nope.qcow2'], { cwd: dir });
    const q = qemuImg(['info', 'nope.qcow2'], { cwd: dir });
    expect(v.status).toBe(q.status);
    expect(v.stderr.replace(/^vdisk:/, 'qemu-img:')).toBe(q.stderr);
  });

  it('refuses a backing chain that loops back to itself instead of hanging', () => {
    ok('create', qemuImg(['create', '-q', '-f', 'qcow2', 'a.qcow2', '1M'], { cwd: dir }));
    ok('create', qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', 'b.qcow2'], { cwd: dir }));
    ok('rebase', qemuImg(['rebase', '-u', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2'], { cwd: dir }));
    for (const args of [['map', 'b.qcow2'], ['convert', '-O', 'raw', 'b.qcow2', 'loop.raw'], ['info', '--backing-chain', 'b.qcow2']]) {
      const r = vdisk(args, { cwd: dir, timeoutMs: 20_000 });
      expect(r.status, describeRun(args.join(' '), r)).toBe(1);
      expect(r.stderr).toMatch(/infinite loop/);
    }
  });
});
