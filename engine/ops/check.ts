/**
 * `check`: the consistency check of an image's top layer, shaped as qemu's
 * ImageCheck (JSON keys, which counts appear) with qemu-img's human layout and
 * exit codes. The checking itself is the driver's; it never writes.
 */
import type { CheckResult, Layer } from '../driver.ts';
import type { QValue } from '../format/qemu-json.ts';
import { VDiskError } from '../errors.ts';

export class CheckNotSupportedError extends VDiskError {
  constructor(file: string) {
    super(file, 'This image format does not support checks');
  }
}

export interface CheckReport {
  filename: string;
  format: string;
  result: CheckResult;
}

export async function checkLayer(layer: Layer, signal?: AbortSignal): Promise<CheckReport> {
  if (!layer.check) throw new CheckNotSupportedError(layer.source.name);
  return { filename: layer.source.name, format: layer.format, result: await layer.check(signal) };
}

/** qemu's ImageCheck: optional members appear only when non-zero. */
export function checkJson(r: CheckReport): QValue {
  const c = r.result;
  const opt = (n: number | undefined) => (n ? n : undefined);
  return {
    filename: r.filename,
    format: r.format,
    'check-errors': c.checkErrors,
    corruptions: opt(c.corruptions),
    leaks: opt(c.leaks),
    'image-end-offset': opt(c.imageEndOffset),
    'total-clusters': opt(c.totalClusters),
    'allocated-clusters': opt(c.allocatedClusters),
    'fragmented-clusters': opt(c.fragmentedClusters),
    'compressed-clusters': opt(c.compressedClusters),
  };
}

/** qemu-img check's summary on stdout. */
export function checkHuman(r: CheckReport): string {
  const c = r.result;
  const out: string[] = [];
  if (!(c.corruptions || c.leaks || c.checkErrors)) out.push('No errors were found on the image.\n');
  else {
    if (c.corruptions) {
      out.push(`\n${c.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`);
    }
    if (c.leaks) out.push(`\n${c.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`);
    if (c.checkErrors) out.push(`\n${c.checkErrors} internal errors have occurred during the check.\n`);
  }
  const total = c.totalClusters ?? 0;
  const allocated = c.allocatedClusters ?? 0;
  if (total !== 0 && allocated !== 0) {
    const pct = (n: number, of: number) => fixed2((n * 100) / of);
    out.push(
      `${allocated}/${total} = ${pct(allocated, total)}% allocated, ${pct(c.fragmentedClusters ?? 0, allocated)}% fragmented, ` +
        `${pct(c.compressedClusters ?? 0, allocated)}% compressed clusters\n`,
    );
  }
  if (c.imageEndOffset) out.push(`Image end offset: ${c.imageEndOffset}\n`);
  return out.join('');
}

/**
 * C's printf("%.2f"). toFixed rounds an exact tie (28.125) up where printf
 * rounds it to even (28.12); a tie at the third decimal is only possible for
 * multiples of 1/8, where every product below is exact.
 */
function fixed2(x: number): string {
  if (Number.isInteger(x * 8) && (x * 1000) % 10 === 5) {
    const cents = Math.floor(x * 100);
    return ((cents % 2 === 0 ? cents : cents + 1) / 100).toFixed(2);
  }
  return x.toFixed(2);
}

/** qemu-img check's exit code: 2 corruptions, 3 only leaks, 1 the check itself failed, else 0. */
export function checkExitCode(r: CheckReport): number {
  if (r.result.failure !== undefined || r.result.checkErrors) return 1;
  if (r.result.corruptions) return 2;
  if (r.result.leaks) return 3;
  return 0;
}
