/** The writer registry: formats `convert -O` can produce, and those `measure` can size. */
import { OptionError } from '../errors.ts';
import type { FormatMeasurer, FormatWriter } from '../writer.ts';
import { rawMeasurer, rawWriter } from './raw/writer.ts';
import { vpcWriter } from './vpc/writer.ts';
import { vhdxWriter } from './vhdx/writer.ts';
import { qedWriter } from './qed/writer.ts';
import { vmdkWriter } from './vmdk/writer.ts';
import { vdiWriter } from './vdi/writer.ts';
import { qcow2Writer } from './qcow2/writer.ts';
import { qcow2Measurer } from './qcow2/measure.ts';

export const writers: readonly FormatWriter[] = [rawWriter, vpcWriter, vmdkWriter, vdiWriter, vhdxWriter, qedWriter, qcow2Writer];
export const measurers: readonly FormatMeasurer[] = [rawMeasurer, qcow2Measurer];

export function writerByName(name: string): FormatWriter {
  const w = writers.find((x) => x.name === name);
  if (!w) throw new OptionError(`Writing the '${name}' format is not supported`);
  return w;
}

export function measurerByName(name: string): FormatMeasurer {
  const m = measurers.find((x) => x.name === name);
  if (!m) throw new OptionError(`Block driver '${name}' does not support size measurement`);
  return m;
}
