/**
 * vdisk against qemu-img on images this section builds: a raw image of GIB GiB
 * (per GiB: 256 MiB random, 256 MiB text, 256 MiB written zeros, 256 MiB hole)
 * and its qcow2 conversion.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { GIB, MiB, versusQemu } from '../lib.ts';

function makeImages(dir: string): { raw: string; qcow2: string } {
  const raw = join(dir, 'bench.raw');
  const fd = openSync(raw, 'w');
  const chunk = Buffer.alloc(4 * MiB);
  const text = Buffer.from('The quick brown fox jumps over the lazy dog; disk images compress well. '.repeat(64));
  for (let g = 0; g < GIB; g++) {
    const base = g * 1024 * MiB;
    for (let off = 0; off < 256 * MiB; off += chunk.length) writeSync(fd, randomFillSync(chunk), 0, chunk.length, base + off);
    for (let off = 0; off < chunk.length; off += text.length) text.copy(chunk, off);
    for (let off = 0; off < 256 * MiB; off += chunk.length) writeSync(fd, chunk, 0, chunk.length, base + 256 * MiB + off);
    chunk.fill(0);
    for (let off = 0; off < 256 * MiB; off += chunk.length) writeSync(fd, chunk, 0, chunk.length, base + 512 * MiB + off);
  }
  ftruncateSync(fd, GIB * 1024 * MiB);
  closeSync(fd);
  const qcow2 = join(dir, 'bench.qcow2');
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  return { raw, qcow2 };
}

export async function commands(dir: string): Promise<void> {
  const { raw, qcow2 } = makeImages(dir);
  const out = join(dir, 'out.raw');
  const drop = () => rmSync(out, { force: true });
  versusQemu(`info qcow2 ${GIB} GiB`, ['info', '--output=json', qcow2], ['info', '--output=json', qcow2]);
  versusQemu(`map qcow2 ${GIB} GiB`, ['map', '--output=json', qcow2], ['map', '--output=json', qcow2]);
  versusQemu(`convert qcow2 -> raw ${GIB} GiB`, ['convert', '-O', 'raw', qcow2, out], ['convert', '-O', 'raw', qcow2, out], drop);
  versusQemu(`compare raw vs qcow2 ${GIB} GiB`, ['compare', raw, qcow2], ['compare', raw, qcow2]);
}
