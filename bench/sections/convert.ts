/**
 * convert from the shared raw image into each writer, vdisk against qemu-img
 * with the same arguments, each ratio printed next to its target. Two
 * sections: `convert` (uncompressed output, at most 1.2× qemu-img's time) and
 * `compressed` (which vdisk spreads over every core, at most 0.6×).
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { GIB, versusQemu } from '../lib.ts';
import { benchImages } from '../images.ts';

interface Case {
  label: string;
  args: string[];
  target: number;
}

const UNCOMPRESSED: Case[] = [
  { label: 'qcow2', args: ['-O', 'qcow2'], target: 1.2 },
  { label: 'vpc', args: ['-O', 'vpc'], target: 1.2 },
  { label: 'vhdx', args: ['-O', 'vhdx'], target: 1.2 },
  { label: 'vdi', args: ['-O', 'vdi'], target: 1.2 },
];

const COMPRESSED: Case[] = [
  { label: 'qcow2 -c', args: ['-c', '-O', 'qcow2'], target: 0.6 },
  { label: 'vmdk streamOptimized', args: ['-O', 'vmdk', '-o', 'subformat=streamOptimized'], target: 0.6 },
];

function run(dir: string, cases: Case[]): void {
  const { raw } = benchImages(dir);
  const out = join(dir, 'out.img');
  const drop = () => rmSync(out, { force: true });
  for (const c of cases) {
    const args = ['convert', '-f', 'raw', ...c.args, raw, out];
    versusQemu(`convert raw -> ${c.label} ${GIB} GiB`, args, args, { after: drop, target: c.target });
  }
}

export const convert = async (dir: string) => run(dir, UNCOMPRESSED);
export const compressed = async (dir: string) => run(dir, COMPRESSED);
