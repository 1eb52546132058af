/**
 * Worker side of the Convert and Sparsify views: `qemu-img convert` (or the
 * engine's sparsify, which is convert with zero detection into the source's
 * own format) of a picked image into a sink the page chose — a file picked with
 * showSaveFilePicker, or an OPFS temporary the page then downloads. Units
 * that need compressing go to a pool of Web Workers, started only when the
 * output compresses. Stale OPFS temporaries are removed when the worker starts.
 */
import type { Compressor } from '../../engine/codecs/compress.ts';
import { UnsupportedFeatureError } from '../../engine/errors.ts';
import type { ByteSink } from '../../engine/io/sink.ts';
import type { ConvertTarget } from '../../engine/api.ts';
import type { Outcome, PickedFile, Progress } from '../lib/engine-protocol.ts';
import { attempt, engineOver, withProgress } from './common.ts';
import { webCompressPool } from './compress-pool.ts';
import { OpfsSink, removeStaleTemporaries, WritableSink } from './sinks.ts';

/** Where the output goes. */
export type SaveTarget =
  /** A file the user picked; the handle crosses from the page by structured clone. */
  | { kind: 'handle'; handle: FileSystemFileHandle }
  /** An OPFS temporary (`temp`, held under its lock by the page) that will be downloaded as `name`. */
  | { kind: 'opfs'; temp: string; name: string };

export interface ConvertJob {
  name: string;
  format?: string;
  /** An id or a name, as qemu-img's -s / -l NAME. */
  snapshot?: string;
  /** -O and -o, the options as name/value pairs in the order given. */
  outFormat: string;
  options?: [string, string][];
  /** -c */
  compress?: boolean;
  /** -S in bytes. */
  sparseSize?: number;
}

export interface ConvertResult {
  /** The name the output was written under. */
  name: string;
  /** Its length in bytes. */
  length: number;
  /** Sparsify only: the total length of the files the source is made of (image, backing files, extents). */
  before?: number;
}

export interface ConvertOps {
  convert(files: PickedFile[], job: ConvertJob, target: SaveTarget, onProgress?: (p: Progress) => void): Promise<Outcome<ConvertResult>>;
  /** qemu-img convert with zero detection, in the source's format unless `outFormat` says otherwise (no snapshot, no -c). */
  sparsify(files: PickedFile[], job: ConvertJob, target: SaveTarget, onProgress?: (p: Progress) => void): Promise<Outcome<ConvertResult>>;
}

// A page in another tab may hold its temporaries; only the unheld ones go.
void removeStaleTemporaries().catch(() => undefined);

/** Records the length the output was committed with. */
function measured(sink: ByteSink, result: { length: number }): ByteSink {
  return {
    name: sink.name,
    write: (offset, data) => sink.write(offset, data),
    commit: async (length) => {
      await sink.commit(length);
      result.length = length;
    },
    abort: () => sink.abort(),
  };
}

/** Starts the compression workers only when the writer first asks for a unit to be packed. */
function lazyPool(): Compressor {
  let pool: Compressor | undefined;
  return {
    compress: (data, codec) => (pool ??= webCompressPool()).compress(data, codec),
    close: () => pool?.close(),
  };
}

/** Opens the target as a sink, runs `step` into it with a compressor at hand, and says what was written. */
async function writeTo(
  target: SaveTarget,
  step: (to: ConvertTarget) => Promise<{ before?: number }>,
): Promise<Outcome<ConvertResult>> {
  const compressor = lazyPool();
  try {
    return await attempt(async () => {
      const sink = target.kind === 'handle' ? await WritableSink.open(target.handle) : await OpfsSink.create(target.temp, target.name);
      const written = { length: 0 };
      const { before } = await step({
        name: sink.name,
        sink: measured(sink, written),
        // A page saves one file per conversion (one picker, one download).
        openSink: async (extra) => {
          throw new UnsupportedFeatureError(sink.name, `a second output file (${extra}) in the browser: choose a single-file subformat`);
        },
        compressor,
      });
      return { name: sink.name, length: written.length, before };
    });
  } finally {
    compressor.close();
  }
}

export const convertOps: ConvertOps = {
  convert(files, job, target, onProgress) {
    return withProgress(onProgress, async (report) => {
      const { api } = await engineOver(files);
      return writeTo(target, async (to) => {
        const { options, ...rest } = job;
        await api.convert({ ...rest, options: new Map(options ?? []), onProgress: report }, to);
        return {};
      });
    });
  },

  sparsify(files, job, target, onProgress) {
    return withProgress(onProgress, async (report) => {
      const { api } = await engineOver(files);
      return writeTo(target, async (to) => {
        const r = await api.sparsify(
          { name: job.name, format: job.format, outFormat: job.outFormat, options: new Map(job.options ?? []), sparseSize: job.sparseSize, onProgress: report },
          to,
        );
        return { before: r.before };
      });
    });
  },
};
