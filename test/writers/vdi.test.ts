// The VDI writer (convert -O vdi, dynamic and static): every source, checked
// by qemu-img (check, compare, info) against qemu-img's own output for the
// same conversion, which ours must equal byte for byte apart from the two
// random UUIDs; a block map larger than one window of the writer; images as
// qemu-img create makes them; refusals worded as qemu-img words them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuImg, run, vdisk } from '../helpers/run.ts';
import { vdiWriter } from '../../engine/drivers/vdi/writer.ts';
import * as L from '../../engine/drivers/vdi/layout.ts';
import { checkOutput, convertBoth, convertInProcess, makeSources } from './vmdk-vdi-support.ts';
import { ok, type Source } from './parity.ts';

let dir: string;
let sources: Source[];
const sizes: string[] = [];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-wvdi-'));
  sources = makeSources(dir);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  if (process.env.VDISK_REPORT_SIZES) console.log(sizes.join('\n'));
});

const read = (path: string) => Buffer.from(readFileSync(path));

/** The first `bytes` of a file. */
function head(path: string, bytes: number): Buffer {
  const out = Buffer.alloc(Math.min(bytes, statSync(path).size));
  const fd = openSync(path, 'r');
  readSync(fd, out, 0, out.length, 0);
  closeSync(fd);
  return out;
}

/** The file (or, past 64 MiB, its head and its length) with the image and last-snapshot UUIDs blanked. */
function withoutUuids(path: string): Buffer {
  const bytes = head(path, 64 * 1024 * 1024).fill(0, L.H.uuidImage, L.H.uuidLink);
  return Buffer.concat([bytes, Buffer.from(String(statSync(path).size))]);
}

const uuidOf = (path: string, at: number) => read(path).subarray(at, at + L.UUID_BYTES).toString('hex');

describe('vdi writer: every source, dynamic and static', () => {
  const sets: [string, string[]][] = [
    ['dynamic', []],
    ['static', ['-o', 'static=on']],
  ];
  for (const [tag, args] of sets) {
    for (const label of ['raw', 'qcow2', 'compressed qcow2', 'qcow2 chain', 'stream-optimized vmdk', 'vhdx', 'vdi']) {
      it(`${tag} from ${label}`, () => {
        const src = sources.find((s) => s.name === label)!;
        const pair = convertBoth(dir, `${tag}-${label.replace(/ /g, '-')}`, src, ['-O', 'vdi', ...args], 'disk.vdi');
        const { ours, theirs } = checkOutput(dir, pair, src, 'vdi', ['disk.vdi']);
        sizes.push(`vdi ${tag} from ${label}: ours ${ours} B, qemu-img ${theirs} B`);
        expect(withoutUuids(join(pair.v, 'disk.vdi')).equals(withoutUuids(join(pair.q, 'disk.vdi')))).toBe(true);
      });
    }
  }

  it('-S 0 writes every block, as qemu-img does', () => {
    const pair = convertBoth(dir, 'S0', sources[0]!, ['-S', '0', '-O', 'vdi'], 'disk.vdi');
    checkOutput(dir, pair, sources[0]!, 'vdi', ['disk.vdi']);
    expect(withoutUuids(join(pair.v, 'disk.vdi')).equals(withoutUuids(join(pair.q, 'disk.vdi')))).toBe(true);
  });
});

describe('vdi writer: UUIDs', () => {
  it('are random version 4 UUIDs, new for every image, image and last snapshot apart', async () => {
    const a = join(dir, 'u1.vdi');
    const b = join(dir, 'u2.vdi');
    for (const out of [a, b]) await convertInProcess(vdiWriter, join(dir, 'src.qcow2'), out, {});
    expect(uuidOf(a, L.H.uuidImage)).not.toBe(uuidOf(b, L.H.uuidImage));
    expect(uuidOf(a, L.H.uuidImage)).not.toBe(uuidOf(a, L.H.uuidLastSnap));
    // VirtualBox's byte order: the version nibble is the high nibble of byte 7, the variant in byte 8.
    const u = read(a).subarray(L.H.uuidImage, L.H.uuidImage + L.UUID_BYTES);
    expect(u[7]! >> 4).toBe(4);
    expect(u[8]! >> 6).toBe(2);
    for (const at of [L.H.uuidLink, L.H.uuidParent]) expect(uuidOf(a, at)).toBe('0'.repeat(32));
  });
});

describe('vdi writer: images as qemu-img makes them', () => {
  const cases: [string, string][] = [
    ['1000', 'static=off'],
    ['1000', 'static=on'],
    ['100M', 'static=off'],
    ['3G', 'static=on'],
    // More blocks than one window of the block map (256 Ki entries).
    ['300G', 'static=off'],
  ];
  for (const [size, options] of cases) {
    it(`${size} ${options}`, async () => {
      const folder = join(dir, `empty-${size}-${options.replace('=', '_')}`);
      mkdirSync(folder, { recursive: true });
      ok('qemu-img create', qemuImg(['create', '-q', '-f', 'vdi', '-o', options, 'q.vdi', size], { cwd: folder }));
      ok('qemu-img create qcow2', qemuImg(['create', '-q', '-f', 'qcow2', 'empty.qcow2', size], { cwd: folder }));
      await convertInProcess(vdiWriter, join(folder, 'empty.qcow2'), join(folder, 'v.vdi'), Object.fromEntries([options.split('=')]));
      expect(withoutUuids(join(folder, 'v.vdi')).equals(withoutUuids(join(folder, 'q.vdi')))).toBe(true);
      ok('qemu-img check', qemuImg(['check', 'v.vdi'], { cwd: folder }));
      rmSync(folder, { recursive: true, force: true });
    });
  }

  it('data past the first window of the block map lands where qemu-img puts it', () => {
    const folder = join(dir, 'window');
    mkdirSync(folder, { recursive: true });
    ok('create', qemuImg(['create', '-q', '-f', 'qcow2', 'big.qcow2', '300G'], { cwd: folder }));
    ok('qemu-io', run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 290G 4k', '-c', 'write -P 0xa5 1G 4k', 'big.qcow2'], { cwd: folder }));
    const src: Source = { name: 'big', file: join('window', 'big.qcow2'), format: 'qcow2' };
    const pair = convertBoth(dir, 'window-out', src, ['-O', 'vdi'], 'disk.vdi');
    checkOutput(dir, pair, src, 'vdi', ['disk.vdi']);
    expect(withoutUuids(join(pair.v, 'disk.vdi')).equals(withoutUuids(join(pair.q, 'disk.vdi')))).toBe(true);
  });
});

describe('vdi writer: refusals, as qemu-img words them, leaving no file behind', () => {
  const cases: [string[], string][] = [
    [['-o', 'static=maybe'], "Parameter 'static' expects 'on' or 'off'"],
    [['-c'], 'Compression not supported for this file format'],
    [['-B', '../src.raw', '-F', 'raw'], "Backing file not supported for file format 'vdi'"],
    [['-o', 'preallocation=full'], 'Unsupported preallocation mode: full'],
  ];
  for (const [args, message] of cases) {
    it(args.join(' '), () => {
      const out = join(dir, 'refused');
      rmSync(out, { recursive: true, force: true });
      mkdirSync(out);
      const r = vdisk(['convert', '-O', 'vdi', ...args, join(dir, 'src.raw'), 'x.vdi'], { cwd: out });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(message);
      expect(readdirSync(out)).toEqual([]);
    });
  }

  it('a disk larger than VDI can describe', () => {
    const out = join(dir, 'huge');
    mkdirSync(out, { recursive: true });
    ok('create', qemuImg(['create', '-q', '-f', 'qcow2', 'huge.qcow2', '600T'], { cwd: out }));
    const q = qemuImg(['convert', '-O', 'vdi', 'huge.qcow2', 'q.vdi'], { cwd: out });
    const v = vdisk(['convert', '-O', 'vdi', 'huge.qcow2', 'v.vdi'], { cwd: out });
    expect(v.status).toBe(1);
    const detail = /Unsupported VDI image size.*\)/.exec(q.stderr)![0];
    expect(v.stderr).toContain(detail);
    expect(readdirSync(out).filter((f) => f.startsWith('v'))).toEqual([]);
  });
});
