/**
 * Worker side of the Compare view: `qemu-img compare` of two picked images
 * (with `--all` ranges), the command it corresponds to and qemu-img's exit
 * code for the answer, and bytes for the hex view.
 */
import { transfer } from 'comlink';
import { VDiskError } from '../../engine/errors.ts';
import { CompareStepError, type CompareReport } from '../../engine/ops/compare.ts';
import type { Outcome, PickedFile, Progress } from '../lib/engine-protocol.ts';
import { attempt, engineOver, failureOf, shellWordOf, withProgress } from './common.ts';

export interface CompareRequest {
  a: { name: string; format?: string };
  b: { name: string; format?: string };
  /** qemu-img compare -s */
  strict?: boolean;
  /** Every differing range, not only the first. */
  all?: boolean;
}

/** A compare's answer (or failure), with the qemu-img command it answers and the exit code qemu-img would give. */
export type CompareOutcome = Outcome<CompareReport> & {
  command: string;
  /** 0 identical, 1 different, 2 could not open, 3 allocation error, 4 read error. */
  exitCode: number;
};

export interface CompareOps {
  compare(files: PickedFile[], req: CompareRequest, onProgress?: (p: Progress) => void): Promise<CompareOutcome>;
  /** Guest bytes of an image, at most 64 KiB; past its end reads as zeros. */
  read(files: PickedFile[], name: string, offset: number, length: number): Promise<Outcome<Uint8Array>>;
}

/** The hex view shows a screenful; a larger read is a mistake, not a request. */
const MAX_READ = 64 * 1024;

/** The qemu-img command line for a request (`--all` is vdisk's own, so it is left out). */
function compareCommand(req: CompareRequest): string {
  const words = ['qemu-img', 'compare'];
  if (req.a.format) words.push('-f', req.a.format);
  if (req.b.format) words.push('-F', req.b.format);
  if (req.strict) words.push('-s');
  words.push(shellWordOf(req.a.name), shellWordOf(req.b.name));
  return words.join(' ');
}

/** qemu-img compare's exit code for a failure: a failed step says which; anything else happened while opening. */
const exitCodeOf = (e: VDiskError) => (e instanceof CompareStepError ? (e.step === 'allocation' ? 3 : 4) : 2);

export const compareOps: CompareOps = {
  async compare(files, req, onProgress) {
    const command = compareCommand(req);
    try {
      const value = await withProgress(onProgress, async (report) => {
        const { api } = await engineOver(files);
        return api.compare(req.a, req.b, { strict: req.strict, all: req.all, onProgress: report });
      });
      return { ok: true, value, command, exitCode: value.identical ? 0 : 1 };
    } catch (e) {
      if (!(e instanceof VDiskError)) throw e;
      return { ok: false, error: failureOf(e), command, exitCode: exitCodeOf(e) };
    }
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
