/**
 * The images the command sections share, built once per run: a raw image of
 * GIB GiB (per GiB: 256 MiB random, 256 MiB text, 256 MiB written zeros,
 * 256 MiB hole) and its qcow2 conversion by qemu-img.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, fsyncSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { GIB, MiB } from './lib.ts';

export interface BenchImages {
  raw: string;
  qcow2: string;
}

const built = new Map<string, BenchImages>();

export function benchImages(dir: string): BenchImages {
  const known = built.get(dir);
  if (known) return known;
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
  fsyncSync(fd);
  closeSync(fd);
  const qcow2 = join(dir, 'bench.qcow2');
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  // On disk before anything is timed: writing back gigabytes would slow whichever runs first.
  execFileSync('sync');
  const images = { raw, qcow2 };
  built.set(dir, images);
  return images;
}
