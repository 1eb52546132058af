// Shared by the VMDK and VDI writer tests: the source images (made by
// qemu-img and qemu-io), running one conversion with both tools into two
// folders under the same file name (so names in descriptors and info agree),
// the checks every output must pass, and an in-process conversion that hands
// a writer the parent's facts (for VMDK parent links).
import { expect } from 'vitest';
import { mkdirSync, openSync, rmSync, writeSync, closeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { qemuImg, run, vdisk } from '../helpers/run.ts';
import { allocated, ok, text, type Source } from './parity.ts';
import { NodeFileSink, nodeWorkspace } from '../../cli/node-io.ts';
import { openImage, type Image } from '../../engine/image.ts';
import { convertImage } from '../../engine/ops/convert.ts';
import { inlineCompressor } from '../../engine/codecs/compress.ts';
import type { CreateOptions, FormatWriter } from '../../engine/writer.ts';

export const MiB = 1024 * 1024;

/** A deterministic byte pattern that does not compress (xorshift32). */
export function noise(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function poke(path: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
}

const qemuIo = (dir: string, fmt: string, file: string, cmds: string[]) =>
  ok('qemu-io', run('qemu-io', ['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), file], { cwd: dir }));

/** The guest size of the sources: past one 32 MiB grain table, not a whole number of grains or blocks. */
export const SOURCE_SIZE = 70 * MiB + 3072;

/**
 * Sources with holes, written zeros, incompressible and text data, a run
 * across a grain-table boundary and data in the last, partial grain; the same
 * content as qcow2 (plain and compressed), stream-optimized VMDK, VHDX and
 * VDI; and a qcow2 chain whose top zeroes part of its base.
 */
export function makeSources(dir: string): Source[] {
  const raw = join(dir, 'src.raw');
  ok('create', qemuImg(['create', '-q', '-f', 'raw', raw, String(SOURCE_SIZE)]));
  qemuIo(dir, 'raw', raw, ['write -P 0x11 0 1M', 'write -P 0x22 3149824 8k', 'write -P 0 5M 1M', 'write -P 0x33 32704k 192k', 'write -P 0x44 70M 3k']);
  poke(raw, 10 * MiB, noise(256 * 1024, 7));
  poke(raw, 20 * MiB + 512, text(MiB));
  const conv = (args: string[]) => ok('qemu-img convert', qemuImg(['convert', ...args], { cwd: dir }));
  conv(['-O', 'qcow2', 'src.raw', 'src.qcow2']);
  conv(['-c', '-O', 'qcow2', 'src.raw', 'srcc.qcow2']);
  conv(['-O', 'vmdk', '-o', 'subformat=streamOptimized', 'src.raw', 'src-so.vmdk']);
  conv(['-O', 'vhdx', 'src.raw', 'src.vhdx']);
  conv(['-O', 'vdi', 'src.raw', 'src.vdi']);
  conv(['-O', 'qcow2', 'src.raw', 'base.qcow2']);
  ok('create', qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2'], { cwd: dir }));
  qemuIo(dir, 'qcow2', join(dir, 'top.qcow2'), ['write -P 0x55 2M 64k', 'write -z 0 64k', 'write -z 32M 1M', 'write -P 0x66 40M 4k']);
  return [
    { name: 'raw', file: 'src.raw', format: 'raw' },
    { name: 'qcow2', file: 'src.qcow2', format: 'qcow2' },
    { name: 'compressed qcow2', file: 'srcc.qcow2', format: 'qcow2' },
    { name: 'qcow2 chain', file: 'top.qcow2', format: 'qcow2' },
    { name: 'stream-optimized vmdk', file: 'src-so.vmdk', format: 'vmdk' },
    { name: 'vhdx', file: 'src.vhdx', format: 'vhdx' },
    { name: 'vdi', file: 'src.vdi', format: 'vdi' },
  ];
}

export interface Pair {
  /** Folders holding vdisk's and qemu-img's output, each under the same file name. */
  v: string;
  q: string;
  name: string;
}

/**
 * `convert ARGS SRC NAME` with vdisk into DIR/v-TAG and with qemu-img into
 * DIR/q-TAG; the source is named relative to those folders.
 */
export function convertBoth(dir: string, tag: string, src: Source, args: string[], name: string): Pair {
  const pair = { v: join(dir, `v-${tag}`), q: join(dir, `q-${tag}`), name };
  for (const d of [pair.v, pair.q]) {
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d);
  }
  const full = ['convert', '-f', src.format, ...args, join('..', src.file), name];
  ok('vdisk ' + full.join(' '), vdisk(full, { cwd: pair.v }));
  ok('qemu-img ' + full.join(' '), qemuImg(full, { cwd: pair.q }));
  return pair;
}

/** qemu-img info JSON of an output, without the two fields that may differ (host allocation; VMDK's random CID). */
export function infoOf(folder: string, name: string, format: string): Record<string, unknown> {
  const r = qemuImg(['info', '-f', format, '--output=json', name], { cwd: folder });
  ok('qemu-img info', r);
  const info = JSON.parse(r.stdout) as Record<string, unknown>;
  delete info['actual-size'];
  const specific = info['format-specific'] as { data?: Record<string, unknown> } | undefined;
  delete specific?.data?.['cid'];
  return info;
}

/**
 * What every output must do: pass qemu-img check, equal its source by
 * qemu-img compare, open under its format name with qemu-img's info, and take
 * no more than qemu-img's output for the same conversion, +5%.
 */
export function checkOutput(dir: string, pair: Pair, src: Source, format: string, files: string[]): { ours: number; theirs: number } {
  const out = join(pair.v, pair.name);
  const check = qemuImg(['check', '-f', format, '--output=json', out]);
  ok('qemu-img check', check);
  const report = JSON.parse(check.stdout) as Record<string, number>;
  expect(report['check-errors'] ?? 0).toBe(0);
  expect(report['corruptions'] ?? 0).toBe(0);
  ok('qemu-img compare', qemuImg(['compare', '-f', src.format, '-F', format, join(dir, src.file), out]));
  expect(infoOf(pair.v, pair.name, format)).toEqual(infoOf(pair.q, pair.name, format));
  // And our reader reads our output as qemu-img does.
  const args = ['info', '-f', format, '--output=json', pair.name];
  const mine = vdisk(args, { cwd: pair.v });
  ok('vdisk info', mine);
  const noSize = (t: string) => t.replace(/^.*"actual-size".*\n/gm, '');
  expect(noSize(mine.stdout)).toBe(noSize(qemuImg(args, { cwd: pair.v }).stdout));
  const ours = files.reduce((n, f) => n + allocated(join(pair.v, f)), 0);
  const theirs = files.reduce((n, f) => n + allocated(join(pair.q, f)), 0);
  expect(ours, `allocated bytes: ours ${ours}, qemu-img's ${theirs}`).toBeLessThanOrEqual(theirs * 1.05);
  return { ours, theirs };
}

/**
 * A conversion in this process, through the pipeline, with the backing
 * image's facts handed to the writer (the parent's CID of a VMDK child).
 */
export async function convertInProcess(
  writer: FormatWriter,
  srcPath: string,
  outPath: string,
  options: Record<string, string>,
  backing?: { name: string; format: string },
  compress = false,
): Promise<void> {
  const ws = nodeWorkspace;
  const image = await openImage(await ws.open(srcPath), { opener: ws.opener });
  let backingImage: Image | undefined;
  if (backing) {
    const base = await ws.open(join(dirname(outPath), backing.name));
    backingImage = await openImage(base, { opener: ws.opener, format: backing.format });
  }
  const create: CreateOptions & { backing?: { facts?: unknown } } = {
    size: image.size,
    options: new Map(Object.entries(options)),
    compress,
    backing: backing && { ...backing, facts: backingImage!.layers[0]!.facts() },
  };
  const sink = await NodeFileSink.create(outPath);
  const out = await writer.create(sink, create, (n) => NodeFileSink.create(join(dirname(outPath), n)));
  await convertImage(image, out, { backing: backingImage, compressor: inlineCompressor });
}
