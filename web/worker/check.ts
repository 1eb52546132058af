/** Worker side of the Check view: `qemu-img check` of an image, with qemu-img's texts and exit code beside the counts. */
import { checkExitCode, checkHuman, checkJson, type CheckReport } from '../../engine/ops/check.ts';
import { toQemuJson } from '../../engine/format/qemu-json.ts';
import type { Outcome, PickedFile } from '../lib/engine-protocol.ts';
import { attempt, engineOver, shellWordOf } from './common.ts';

export interface CheckOutcome {
  report: CheckReport;
  /** What qemu-img check would print: the command, its stdout (human and JSON) and its exit code. */
  command: string;
  human: string;
  json: string;
  exitCode: number;
}

export interface CheckOps {
  check(files: PickedFile[], name: string, opts?: { format?: string }): Promise<Outcome<CheckOutcome>>;
}

export const checkOps: CheckOps = {
  async check(files, name, opts = {}) {
    const { api } = await engineOver(files);
    return attempt(async () => {
      const report = await api.check({ name, format: opts.format });
      return {
        report,
        command: `qemu-img check ${shellWordOf(name)}`,
        human: checkHuman(report),
        json: toQemuJson(checkJson(report)),
        exitCode: checkExitCode(report),
      };
    });
  },
};
