/** Worker side of the Measure view (and the size estimate in Convert): `qemu-img measure` of an image or a size. */
import type { Measurement } from '../../engine/writer.ts';
import { measurers } from '../../engine/drivers/writers.ts';
import type { Outcome, PickedFile } from '../lib/engine-protocol.ts';
import { attempt, engineOver } from './common.ts';

export interface MeasureRequest {
  /** The image to measure; absent with `size` (qemu-img measure --size). */
  name?: string;
  format?: string;
  snapshot?: string;
  size?: number;
  /** -O and -o, the options as name/value pairs in the order given. */
  outFormat: string;
  options?: [string, string][];
}

export interface MeasureOps {
  measure(files: PickedFile[], req: MeasureRequest): Promise<Outcome<Measurement>>;
  /** The formats `measure` can size (-O), as qemu names them. */
  measureFormats(): Promise<string[]>;
}

export const measureOps: MeasureOps = {
  async measure(files, req) {
    const { api } = await engineOver(files);
    return attempt(() =>
      api.measure({
        source: req.name === undefined ? undefined : { name: req.name, format: req.format, snapshot: req.snapshot },
        size: req.size,
        outFormat: req.outFormat,
        options: new Map(req.options ?? []),
      }),
    );
  },

  async measureFormats() {
    return measurers.map((m) => m.name);
  },
};
