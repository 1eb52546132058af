/**
 * The driver registry and content probing. As in qemu-img, the format is
 * decided by the file's leading bytes (the highest probe score wins, raw is
 * the fallback), unless the caller names it.
 */
import { InvalidRequestError } from '../errors.ts';
import type { ByteSource } from '../io/source.ts';
import type { FormatDriver } from '../driver.ts';
import { parallelsDriver } from './parallels/driver.ts';
import { qcowDriver } from './qcow/driver.ts';
import { qcow2Driver } from './qcow2/driver.ts';
import { qedDriver } from './qed/driver.ts';
import { rawDriver } from './raw/driver.ts';
import { vdiDriver } from './vdi/driver.ts';
import { vhdxDriver } from './vhdx/driver.ts';
import { vmdkDriver } from './vmdk/driver.ts';
import { vpcDriver } from './vpc/driver.ts';

export const drivers: readonly FormatDriver[] = [qcow2Driver, qcowDriver, qedDriver, vpcDriver, vdiDriver, parallelsDriver, vmdkDriver, vhdxDriver, rawDriver];

/** How many leading bytes probing looks at (qemu reads 2 KiB). */
const PROBE_BYTES = 2048;

export function driverByName(name: string, file: string): FormatDriver {
  const d = drivers.find((x) => x.name === name);
  if (!d) throw new InvalidRequestError(file, `Unknown driver '${name}'`);
  return d;
}

export async function probe(source: ByteSource): Promise<FormatDriver> {
  const head = await source.read(0, Math.min(PROBE_BYTES, source.size));
  let best = rawDriver;
  let bestScore = 0;
  for (const d of drivers) {
    const score = d.probe(head, source.size);
    if (score > bestScore) {
      best = d;
      bestScore = score;
    }
  }
  return best;
}
