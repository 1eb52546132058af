/** vdisk against qemu-img reading the shared images: info, map, convert to raw, compare. */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { GIB, versusQemu } from '../lib.ts';
import { benchImages } from '../images.ts';

export async function commands(dir: string): Promise<void> {
  const { raw, qcow2 } = benchImages(dir);
  const out = join(dir, 'out.raw');
  const drop = () => rmSync(out, { force: true });
  versusQemu(`info qcow2 ${GIB} GiB`, ['info', '--output=json', qcow2], ['info', '--output=json', qcow2]);
  versusQemu(`map qcow2 ${GIB} GiB`, ['map', '--output=json', qcow2], ['map', '--output=json', qcow2]);
  versusQemu(`convert qcow2 -> raw ${GIB} GiB`, ['convert', '-O', 'raw', qcow2, out], ['convert', '-O', 'raw', qcow2, out], { after: drop });
  versusQemu(`compare raw vs qcow2 ${GIB} GiB`, ['compare', raw, qcow2], ['compare', raw, qcow2]);
}
