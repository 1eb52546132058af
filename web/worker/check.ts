/** Worker side of the Check view: `qemu-img check` of an image, with qemu-img's texts and exit code beside the counts. */
import { CheckNotSupportedError, checkExitCode, checkHuman, checkJson, type CheckReport } from '../../engine/ops/check.ts';
import { OpenError } from '../../engine/errors.ts';
import { toQemuJson } from '../../engine/format/qemu-json.ts';
import type { Outcome, PickedFile } from '../lib/engine-protocol.ts';
import { attempt, engineOver, shellWordOf } from './common.ts';

export interface CheckOutcome {
  /** Absent when the format has no check (qemu-img then exits with 63). */
  report?: CheckReport;
  /** What qemu-img check would print: the command, its stdout (human and JSON), its stderr and its exit code. */
  command: string;
  human: string;
  json: string;
  stderr: string;
  exitCode: number;
}

export interface CheckOps {
  check(files: PickedFile[], name: string, opts?: { format?: string }): Promise<Outcome<CheckOutcome>>;
}

/** The findings qemu-img prints on stderr while it checks, then why the check stopped, if it did. */
function stderrOf(report: CheckReport): string {
  const r = report.result;
  const lines = [...r.messages];
  if (r.failure !== undefined) lines.push(`qemu-img: Check failed: ${r.failure}`);
  else if (r.checkErrors) lines.push('qemu-img: Check failed');
  return lines.map((l) => l + '\n').join('');
}

export const checkOps: CheckOps = {
  async check(files, name, opts = {}) {
    const { api } = await engineOver(files);
    const command = `qemu-img check ${shellWordOf(name)}`;
    return attempt(async () => {
      let report: CheckReport;
      try {
        report = await api.check({ name, format: opts.format });
      } catch (e) {
        const inner = e instanceof OpenError ? e.inner : e;
        if (!(inner instanceof CheckNotSupportedError)) throw e;
        return { command, human: '', json: '', stderr: `qemu-img: ${inner.message}\n`, exitCode: 63 };
      }
      // A check that stopped prints no summary, in either form.
      const stopped = report.result.failure !== undefined;
      return {
        report,
        command,
        human: stopped ? '' : checkHuman(report),
        json: stopped ? '' : toQemuJson(checkJson(report)) + '\n',
        stderr: stderrOf(report),
        exitCode: checkExitCode(report),
      };
    });
  },
};
