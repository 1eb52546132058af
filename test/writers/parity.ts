// Writers checked against qemu-img: source images made by qemu-img and
// qemu-io, each converted by `vdisk convert` and by `qemu-img convert` with
// the same options, and the two outputs held to the same rules (qemu-img
// check, compare with the source, info fields, allocated bytes).
import { expect } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QEMU_IMG, RUN_TIMEOUT_MS, VDISK, describeRun, run, type RunResult } from '../helpers/run.ts';

export const ok = (label: string, r: RunResult): string => {
  expect(r.status, describeRun(label, r)).toBe(0);
  return r.stdout;
};

export interface Source {
  name: string;
  file: string;
  format: string;
  /** The output's backing file, for sources converted with -B. */
  backing?: { file: string; format: string };
}

const MiB = 1024 * 1024;

/** Log-like text: data that is neither a pattern nor zeros. */
export function text(bytes: number): Buffer {
  const lines: string[] = [];
  let n = 0;
  for (let i = 0; n < bytes; i++) {
    const line = `2024-03-01 12:${String(i % 60).padStart(2, '0')}:${String((i * 7) % 60).padStart(2, '0')} host sshd[${1000 + (i % 977)}]: session ${i} opened for user u${i % 13}\n`;
    lines.push(line);
    n += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

/**
 * The sources every writer converts: raw with holes and written zeros (its
 * size not a multiple of 4 KiB), qcow2 with zero clusters, compressed qcow2,
 * a qcow2 backing chain, stream-optimized VMDK, VHDX and VDI made from it.
 */
export function makeSources(dir: string): Source[] {
  const sh = (cmd: string, args: string[]) => ok(cmd, run(cmd, args, { cwd: dir }));
  const io = (fmt: string, file: string, cmds: string[]) => sh('qemu-io', ['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), file]);
  writeFileSync(join(dir, 'text.bin'), text(3 * MiB));
  const size = 13 * MiB - 1536;
  sh('qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', String(size)]);
  // Text across a block boundary, a byte pattern, written zeros over data, sparse pieces, data in the last sector.
  sh('dd', ['if=text.bin', 'of=src.raw', 'bs=64k', 'seek=24', 'conv=notrunc', 'status=none']);
  io('raw', 'src.raw', [
    'write -P 0x41 0 8k',
    `write -P 0x42 ${4 * MiB + 4096} 4k`,
    'write -P 0x43 6m 1m',
    `write -z ${6 * MiB + 65536} 128k`,
    `write -P 0x44 ${9 * MiB + 512} 1k`,
    'write -P 0x45 12m 64k',
    `write -P 0x46 ${size - 512} 512`,
  ]);
  sh('qemu-img', ['convert', '-O', 'qcow2', 'src.raw', 'src.qcow2']);
  io('qcow2', 'src.qcow2', [`write -z ${1.5 * MiB} 256k`, 'write -P 0x47 11m 192k']);
  sh('qemu-img', ['convert', '-c', '-O', 'qcow2', 'src.raw', 'src-c.qcow2']);
  sh('qemu-img', ['convert', '-O', 'qcow2', 'src.raw', 'base.qcow2']);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2']);
  io('qcow2', 'top.qcow2', ['write -P 0x61 512k 64k', 'write -z 6m 256k', 'discard 12m 64k', `write -P 0x62 ${10 * MiB + 4096} 8k`]);
  sh('qemu-img', ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'src.raw', 'src.vmdk']);
  sh('qemu-img', ['convert', '-O', 'vhdx', 'src.raw', 'src.vhdx']);
  sh('qemu-img', ['convert', '-O', 'vdi', 'src.raw', 'src.vdi']);
  return [
    { name: 'raw', file: 'src.raw', format: 'raw' },
    { name: 'qcow2', file: 'src.qcow2', format: 'qcow2' },
    { name: 'compressed qcow2', file: 'src-c.qcow2', format: 'qcow2' },
    { name: 'backing chain', file: 'top.qcow2', format: 'qcow2' },
    { name: 'streamOptimized vmdk', file: 'src.vmdk', format: 'vmdk' },
    { name: 'vhdx', file: 'src.vhdx', format: 'vhdx' },
    { name: 'vdi', file: 'src.vdi', format: 'vdi' },
  ];
}

/** The chain again, converted over its own base image with -B: only what differs from the base is written. */
export const OVER_BACKING: Source = { name: 'backing chain over -B base', file: 'top.qcow2', format: 'qcow2', backing: { file: 'base.qcow2', format: 'qcow2' } };

/** Like run(), without blocking, so that cases run side by side. */
function spawn(command: string, args: readonly string[], cwd: string): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      const status = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ status, signal: (error?.signal as NodeJS.Signals | undefined) ?? null, stdout, stderr, error: status === null ? error ?? undefined : undefined });
    });
  });
}
const qemuImgIn = (dir: string, args: readonly string[]) => spawn(QEMU_IMG, args, dir);
const vdiskIn = (dir: string, args: readonly string[]) => spawn(process.execPath, [VDISK, ...args], dir);

/** Bytes the host has allocated for a file. */
export const allocated = (path: string): number => statSync(path).blocks * 512;

export interface Parity {
  ours: string;
  theirs: string;
  oursBytes: number;
  theirsBytes: number;
}

const infoFields = (json: string): Record<string, unknown> => {
  const info = JSON.parse(json) as Record<string, unknown>;
  delete info['actual-size'];
  delete info['filename'];
  return info;
};

export interface ParityCase {
  dir: string;
  source: Source;
  format: string;
  /** `-o` text for both tools. */
  options: string;
  /** `-o` text for vdisk only, added to `options` (presets qemu-img does not have). */
  oursOnly?: string;
  /** Formats qemu-img checks. */
  checkable: boolean;
  /** Output name stem. */
  tag: string;
}

/**
 * Converts with both tools and holds the output to the rules: qemu-img check
 * passes (where it checks the format), compare with the source says identical
 * through qemu-img and through vdisk, qemu-img info under the format name
 * equals that of qemu-img's own output, vdisk's info equals qemu-img's on our
 * output, and our output is no larger than qemu-img's + 5% in allocated bytes.
 */
export async function checkParity(c: ParityCase): Promise<Parity> {
  const { dir, source, format } = c;
  const ours = `${c.tag}.ours.${format}`;
  const theirs = `${c.tag}.qemu.${format}`;
  const common = ['-f', source.format, '-O', format];
  if (source.backing) common.push('-B', source.backing.file, '-F', source.backing.format);
  const oursOpts = [c.options, c.oursOnly].filter(Boolean).join(',');
  const [converted, qemuConverted] = await Promise.all([
    vdiskIn(dir, ['convert', ...common, ...(oursOpts ? ['-o', oursOpts] : []), source.file, ours]),
    existsSync(join(dir, theirs)) ? undefined : qemuImgIn(dir, ['convert', ...common, ...(c.options ? ['-o', c.options] : []), source.file, theirs]),
  ]);
  ok('vdisk convert', converted);
  if (qemuConverted) ok('qemu-img convert', qemuConverted);
  const [checked, cmp, vcmp, oursInfo, vdiskInfo, theirsInfo] = await Promise.all([
    c.checkable ? qemuImgIn(dir, ['check', '-f', format, ours]) : undefined,
    qemuImgIn(dir, ['compare', '-f', source.format, '-F', format, source.file, ours]),
    vdiskIn(dir, ['compare', '-f', source.format, '-F', format, source.file, ours]),
    qemuImgIn(dir, ['info', '-f', format, '--output=json', ours]),
    vdiskIn(dir, ['info', '-f', format, '--output=json', ours]),
    c.oursOnly ? undefined : qemuImgIn(dir, ['info', '-f', format, '--output=json', theirs]),
  ]);
  if (checked) ok('qemu-img check', checked);
  expect(cmp.stdout, describeRun('qemu-img compare', cmp)).toContain('Images are identical.');
  expect(cmp.status, describeRun('qemu-img compare', cmp)).toBe(0);
  ok('vdisk compare', vcmp);
  expect(infoFields(ok('vdisk info', vdiskInfo))).toEqual(infoFields(ok('qemu-img info', oursInfo)));
  if (theirsInfo) expect(infoFields(oursInfo.stdout)).toEqual(infoFields(ok('qemu-img info', theirsInfo)));
  const oursBytes = allocated(join(dir, ours));
  const theirsBytes = allocated(join(dir, theirs));
  expect(oursBytes, `${ours}: ${oursBytes} allocated bytes against qemu-img's ${theirsBytes}`).toBeLessThanOrEqual(theirsBytes * 1.05);
  return { ours, theirs, oursBytes, theirsBytes };
}

/** A qemu-img error message without its "qemu-img: FILE: error while converting FMT: " prefixes, to hold vdisk's to the same words. */
export const qemuMessage = (stderr: string): string =>
  stderr
    .trim()
    .replace(/^qemu-img: /, '')
    .replace(/^(?:[^:']+: )+/, '');
