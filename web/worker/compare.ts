/** Worker side of the Compare view: `qemu-img compare` of two picked images (with `--all` ranges), and bytes for the hex view. */
import { transfer } from 'comlink';
import type { CompareReport } from '../../engine/ops/compare.ts';
import type { Outcome, PickedFile, Progress } from '../lib/engine-protocol.ts';
import { attempt, engineOver, throttled } from './common.ts';

export interface CompareRequest {
  a: { name: string; format?: string };
  b: { name: string; format?: string };
  /** qemu-img compare -s */
  strict?: boolean;
  /** Every differing range, not only the first. */
  all?: boolean;
}

export interface CompareOps {
  compare(files: PickedFile[], req: CompareRequest, onProgress?: (p: Progress) => void): Promise<Outcome<CompareReport>>;
  /** Guest bytes of an image, at most 64 KiB; past its end reads as zeros. */
  read(files: PickedFile[], name: string, offset: number, length: number): Promise<Outcome<Uint8Array>>;
}

/** The hex view shows a screenful; a larger read is a mistake, not a request. */
const MAX_READ = 64 * 1024;

export const compareOps: CompareOps = {
  async compare(files, req, onProgress) {
    const { api } = await engineOver(files);
    return attempt(() => api.compare(req.a, req.b, { strict: req.strict, all: req.all, onProgress: throttled(onProgress) }));
  },

  async read(files, name, offset, length) {
    const { api } = await engineOver(files);
    const out = new Uint8Array(Math.max(0, Math.min(length, MAX_READ)));
    const outcome = await attempt(async () => {
      await api.read({ name }, offset, out);
      return out;
    });
    return outcome.ok ? transfer(outcome, [out.buffer]) : outcome;
  },
};
