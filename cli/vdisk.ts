/**
 * `vdisk`: qemu-img's commands, flags, output and exit codes over the engine.
 * A thin front like the web app: it parses arguments, calls the engine facade
 * in-process and prints what qemu-img would print.
 */
import { readFile } from 'node:fs/promises';
import { EngineApi } from '../engine/api.ts';
import { OpenError, OptionValueError, SnapshotNotFoundError, VDiskError } from '../engine/errors.ts';
import { CompareStepError } from '../engine/ops/compare.ts';
import { CheckNotSupportedError, checkExitCode, checkHuman, checkJson } from '../engine/ops/check.ts';
import { toQemuJson } from '../engine/format/qemu-json.ts';
import { humanInfo } from '../engine/ops/info.ts';
import { mapHuman, mapJson } from '../engine/format/map-text.ts';
import { loadWasmKernels } from '../engine/kernels/index.ts';
import { loadWasmInflate } from '../engine/kernels/inflate.ts';
import type { SnapshotSelector } from '../engine/driver.ts';
import { has, last, parseArgs, parseSize, UsageError, type OptionSpec, type Parsed } from './args.ts';
import { abandonOutputs, CreateError, NodeFileSink, nodeWorkspace } from './node-io.ts';
import { compressPool, stopCompressing } from './compress-pool.ts';
import { progressLine } from './progress.ts';
import { sizeToStr } from '../engine/format/human.ts';
import type { FileLength } from '../engine/api.ts';
import { dirname, join } from 'node:path';
import { stat } from 'node:fs/promises';

const VERSION = '0.1.0';

const HELP = `vdisk version ${VERSION}: virtual disk image tool, qemu-img compatible
usage: vdisk [standard options] command [command options]

Command syntax:
  info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename
  map [-f fmt] [--output=ofmt] [--start-offset=OFFSET] [--max-length=LEN] [-U] filename
  convert [-f fmt] [-O output_fmt] [-o options] [-c] [-S sparse_size] [-B backing_file [-F backing_fmt]] [-l snapshot_param | -s snapshot_id_or_name] [-p] [-q] filename output_filename
  sparsify [-f fmt] [-O output_fmt] [-o options] [-S sparse_size] [-p] [-q] filename output_filename
  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [-f fmt] [-l snapshot_param] filename]
  compare [-f fmt] [-F fmt] [-p] [-q] [-s] [--all] [--output=ofmt] filename1 filename2
  check [-f fmt] [--output=ofmt] [-q] filename

Command parameters:
  'fmt' is the disk image format; it is guessed automatically in most cases
  'ofmt' is 'human' for human-readable output (default) or 'json' for JSON output
  'snapshot_param' is snapshot.id=ID,snapshot.name=NAME, or just a snapshot id or name
  'sparse_size' is the block size below which all-zero data is not written (default 4k, 0 writes everything)
  sparsify writes the input again with zero detection, in its own format unless -O is given, and
    prints the disk space saved (every file of the input against every file written)

Supported formats: parallels qcow qcow2 qed raw vdi vhdx vmdk vpc
`;

class ExitError extends Error {
  constructor(
    message: string,
    readonly code = 1,
  ) {
    super(message);
  }
}

const common: OptionSpec['long'] = {
  help: { arg: false, key: 'h' },
  format: { arg: true, key: 'f' },
  output: { arg: true, key: 'output' },
  'force-share': { arg: false, key: 'U' },
};

function outputFormat(p: Parsed): 'human' | 'json' {
  const o = last(p, 'output') ?? 'human';
  if (o !== 'human' && o !== 'json') throw new ExitError('--output must be used with human or json as argument.');
  return o;
}

function oneFile(p: Parsed): string {
  if (p.args.length !== 1) throw new ExitError('Expecting one image file name');
  return p.args[0]!;
}

const engine = new EngineApi(nodeWorkspace);

async function info(argv: string[]): Promise<void> {
  const p = parseArgs(argv, { short: 'f:hU', long: { ...common, 'backing-chain': { arg: false, key: 'chain' } } });
  if (has(p, 'h')) return void process.stdout.write(HELP);
  const output = outputFormat(p);
  const chain = has(p, 'chain');
  const r = await engine.info({ name: oneFile(p), format: last(p, 'f'), backingChain: chain });
  if (output === 'json') {
    process.stdout.write(toQemuJson(chain ? r.images : r.images[0]!) + '\n');
  } else {
    process.stdout.write(r.images.map((im, i) => humanInfo(im, r.snapshots[i]!)).join('\n'));
  }
}

async function map(argv: string[]): Promise<void> {
  const p = parseArgs(argv, {
    short: 'f:hU',
    long: { ...common, 'start-offset': { arg: true, key: 'start' }, 'max-length': { arg: true, key: 'len' } },
  });
  if (has(p, 'h')) return void process.stdout.write(HELP);
  const output = outputFormat(p);
  const start = last(p, 'start');
  const len = last(p, 'len');
  const entries = await engine.map({
    name: oneFile(p),
    format: last(p, 'f'),
    start: start === undefined ? undefined : parseSize(start),
    length: len === undefined ? undefined : parseSize(len),
  });
  if (output === 'json') return void process.stdout.write(mapJson(entries));
  const { text, error } = mapHuman(entries);
  process.stdout.write(text);
  if (error) throw new ExitError(error);
}

/** `-l snapshot.id=ID,snapshot.name=NAME` or `-l NAME`. */
function snapshotParam(text: string): SnapshotSelector | string {
  if (!text.includes('=')) return text;
  const sel: SnapshotSelector = {};
  for (const part of text.split(',')) {
    const [k, v] = part.split('=', 2) as [string, string | undefined];
    if (k === 'snapshot.id') sel.id = v;
    else if (k === 'snapshot.name') sel.name = v;
    else throw new ExitError(`Invalid parameter '${k}'`);
  }
  return sel;
}

/** qemu-img's `-o a=1,b=2` (a doubled comma stands for a comma in a value). */
function parseOptions(texts: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const text of texts) {
    for (const part of text.replace(/,,/g, '\0').split(',')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      const key = (eq < 0 ? part : part.slice(0, eq)).replace(/\0/g, ',');
      out.set(key, eq < 0 ? 'on' : part.slice(eq + 1).replace(/\0/g, ','));
    }
  }
  return out;
}

const all = (p: Parsed, key: string) => p.opts.filter(([k, v]) => k === key && v !== true).map(([, v]) => v as string);

async function convert(argv: string[]): Promise<void> {
  const p = parseArgs(argv, {
    short: 'hf:O:o:l:s:S:B:F:cpqnWUm:t:T:',
    long: { help: { arg: false, key: 'h' }, 'force-share': { arg: false, key: 'U' } },
  });
  if (has(p, 'h')) return void process.stdout.write(HELP);
  if (has(p, 'n')) throw new ExitError('convert -n is not supported: vdisk always creates the output');
  if (p.args.length !== 2) throw new ExitError('Expecting one image file name and one output file name');
  const [src, dst] = p.args as [string, string];
  const options = parseOptions(all(p, 'o'));
  // -B/-F and -o backing_file/backing_fmt say the same thing.
  const backingName = last(p, 'B') ?? options.get('backing_file');
  const backingFmt = last(p, 'F') ?? options.get('backing_fmt');
  options.delete('backing_file');
  options.delete('backing_fmt');
  const snap = last(p, 'l') ?? last(p, 's');
  const sparse = last(p, 'S');
  const showProgress = has(p, 'p') && !has(p, 'q');
  // Everything that can refuse the arguments runs before the output file is started.
  const sparseSize = sparse === undefined ? undefined : parseSize(sparse);
  const snapshot = snap === undefined ? undefined : snapshotParam(snap);
  const outFormat = last(p, 'O') ?? 'raw';
  const sink = await createOutput(dst, `converting ${outFormat}`);
  const progress = showProgress ? progressLine((t) => process.stdout.write(t)) : undefined;
  progress?.update(0, 1);
  const compressor = compressPool();
  try {
    await engine.convert(
      {
        name: src,
        format: last(p, 'f'),
        outFormat,
        options,
        compress: has(p, 'c'),
        backing: backingName === undefined ? undefined : { name: backingName, format: backingFmt },
        snapshot,
        sparseSize,
        onProgress: progress ? ({ done, total }) => progress.update(done, total) : undefined,
      },
      { name: dst, sink, openSink: (name) => NodeFileSink.create(join(dirname(dst), name)), compressor },
    );
  } catch (e) {
    throw againstOutput(e, dst, `converting ${outFormat}`);
  } finally {
    compressor.close();
  }
  progress?.end();
}

/** The output file, started under a temporary name. */
async function createOutput(dst: string, what: string): Promise<NodeFileSink> {
  try {
    return await NodeFileSink.create(dst);
  } catch (e) {
    throw againstOutput(e, dst, what);
  }
}

/** What qemu-img reports against the output ("DST: error while converting FMT: …"): failing to create it, or an option value the format refuses. */
function againstOutput(e: unknown, dst: string, what: string): unknown {
  return e instanceof CreateError || e instanceof OptionValueError ? new ExitError(`${dst}: error while ${what}: ${e.message}`) : e;
}

/**
 * convert with zero detection into the input's format, then what it saved:
 * disk space (as `du` counts it) summed over every file the input is made of
 * (the image, its backing files, extents, data files) against the same over
 * the files written. Where a file system does not report its blocks, file
 * lengths stand in.
 */
async function sparsify(argv: string[]): Promise<void> {
  const p = parseArgs(argv, {
    short: 'hf:O:o:S:pqU',
    long: { help: { arg: false, key: 'h' }, 'force-share': { arg: false, key: 'U' } },
  });
  if (has(p, 'h')) return void process.stdout.write(HELP);
  if (p.args.length !== 2) throw new ExitError('Expecting one image file name and one output file name');
  const [src, dst] = p.args as [string, string];
  const sparse = last(p, 'S');
  const sparseSize = sparse === undefined ? undefined : parseSize(sparse);
  const quiet = has(p, 'q');
  const sink = await createOutput(dst, 'sparsifying');
  const progress = has(p, 'p') && !quiet ? progressLine((t) => process.stdout.write(t)) : undefined;
  progress?.update(0, 1);
  const compressor = compressPool();
  let result;
  try {
    result = await engine.sparsify(
      {
        name: src,
        format: last(p, 'f'),
        outFormat: last(p, 'O'),
        options: parseOptions(all(p, 'o')),
        sparseSize,
        onProgress: progress ? ({ done, total }) => progress.update(done, total) : undefined,
      },
      { name: dst, sink, openSink: (name) => NodeFileSink.create(join(dirname(dst), name)), compressor },
    );
  } catch (e) {
    throw againstOutput(e, dst, 'sparsifying');
  } finally {
    compressor.close();
  }
  progress?.end();
  if (quiet) return;
  const before = await diskUsage(result.inputs);
  const after = await diskUsage(result.outputs);
  const change = before >= after ? `saved ${sizeToStr(before - after)}` : `grew by ${sizeToStr(after - before)}`;
  process.stdout.write(`${change}: ${sizeToStr(before)} -> ${sizeToStr(after)} (${before} -> ${after} bytes)\n`);
}

/** Bytes the files take on disk (st_blocks × 512), or their lengths where blocks are not reported. */
async function diskUsage(files: FileLength[]): Promise<number> {
  const sizes = await Promise.all(
    files.map(async (f) => {
      const { blocks } = await stat(f.name);
      return blocks === undefined ? f.length : blocks * 512;
    }),
  );
  return sizes.reduce((a, b) => a + b, 0);
}

async function measure(argv: string[]): Promise<void> {
  const p = parseArgs(argv, {
    short: 'hf:O:o:l:U',
    long: { ...common, size: { arg: true, key: 'size' }, 'force-share': { arg: false, key: 'U' } },
  });
  if (has(p, 'h')) return void process.stdout.write(HELP);
  const output = outputFormat(p);
  const size = last(p, 'size');
  if ((size === undefined) === (p.args.length !== 1) || p.args.length > 1) throw new ExitError('Either --size N or one filename must be specified.');
  const snap = last(p, 'l');
  const m = await engine.measure({
    outFormat: last(p, 'O') ?? 'raw',
    options: parseOptions(all(p, 'o')),
    size: size === undefined ? undefined : parseSize(size),
    source: p.args.length === 1 ? { name: p.args[0]!, format: last(p, 'f'), snapshot: snap === undefined ? undefined : snapshotParam(snap) } : undefined,
  });
  if (output === 'json') {
    process.stdout.write(toQemuJson({ required: m.required, 'fully-allocated': m.fullyAllocated, bitmaps: m.bitmaps }) + '\n');
  } else {
    process.stdout.write(`required size: ${m.required}\nfully allocated size: ${m.fullyAllocated}\n`);
    if (m.bitmaps !== undefined) process.stdout.write(`bitmaps size: ${m.bitmaps}\n`);
  }
}

/** qemu-img compare's exit codes: 0 identical, 1 different, 2 open error, 3 allocation error, 4 read error. */
async function compare(argv: string[]): Promise<void> {
  const p = parseArgs(argv, {
    short: 'hf:F:pqsU',
    long: { help: { arg: false, key: 'h' }, output: { arg: true, key: 'output' }, all: { arg: false, key: 'all' }, 'force-share': { arg: false, key: 'U' } },
  });
  if (has(p, 'h')) return void process.stdout.write(HELP);
  const output = outputFormat(p);
  if (p.args.length !== 2) throw new ExitError('Expecting two image file names');
  const [a, b] = p.args as [string, string];
  const quiet = has(p, 'q');
  const progress = has(p, 'p') && !quiet && output === 'human' ? progressLine((t) => process.stdout.write(t)) : undefined;
  let report;
  try {
    report = await engine.compare({ name: a, format: last(p, 'f') }, { name: b, format: last(p, 'F') }, {
      strict: has(p, 's'),
      all: has(p, 'all'),
      onProgress: progress ? ({ done, total }) => progress.update(done, total) : undefined,
    });
  } catch (e) {
    if (e instanceof OpenError) throw new ExitError(describe(e), 2);
    if (e instanceof CompareStepError) throw new ExitError(e.message, e.step === 'allocation' ? 3 : 4);
    throw e;
  }
  progress?.end();
  if (output === 'json') {
    process.stdout.write(JSON.stringify({ identical: report.identical, 'size-a': report.sizeA, 'size-b': report.sizeB, messages: report.messages, ranges: report.ranges.map((r) => ({ start: r.start, length: r.length, 'hash-a': r.hashA ?? null, 'hash-b': r.hashB ?? null })) }, null, 4) + '\n');
  } else if (!quiet) {
    if (has(p, 'all') && !report.identical) {
      for (const m of report.messages.filter((m) => m.startsWith('Warning') || m.startsWith('Strict'))) process.stdout.write(m + '\n');
      for (const r of report.ranges) process.stdout.write(`Content mismatch at offset ${r.start}, ${r.length} bytes (${r.hashA ?? '-'} != ${r.hashB ?? '-'})\n`);
    } else {
      for (const m of report.messages) process.stdout.write(m + '\n');
    }
  }
  if (!report.identical) process.exitCode = 1;
}

/** Read-only: repairs (-r) are refused rather than written into the input. */
async function check(argv: string[]): Promise<void> {
  const p = parseArgs(argv, { short: 'hf:r:T:qU', long: { ...common, repair: { arg: true, key: 'r' } } });
  if (has(p, 'h')) return void process.stdout.write(HELP);
  const output = outputFormat(p);
  if (has(p, 'r')) throw new ExitError('check -r is not supported: vdisk never modifies its input');
  let report;
  try {
    report = await engine.check({ name: oneFile(p), format: last(p, 'f') });
  } catch (e) {
    if (e instanceof CheckNotSupportedError) throw new ExitError(e.message, 63);
    throw e;
  }
  for (const m of report.result.messages) process.stderr.write(m + '\n');
  if (report.result.failure !== undefined) {
    process.stderr.write(`vdisk: Check failed: ${report.result.failure}\n`);
    process.exitCode = 1;
    return;
  }
  // -q silences the summary in either form, as qemu-img's does; the messages above still go to stderr.
  if (!has(p, 'q')) process.stdout.write(output === 'json' ? toQemuJson(checkJson(report)) + '\n' : checkHuman(report));
  if (report.result.checkErrors) process.stderr.write('vdisk: Check failed\n');
  process.exitCode = checkExitCode(report);
}

const commands: Record<string, (argv: string[]) => Promise<void>> = { info, map, convert, sparsify, compare, check, measure };

/** One line per error, worded as qemu-img words it. */
function describe(e: unknown): string {
  if (e instanceof OpenError) {
    if (e.inner instanceof SnapshotNotFoundError) return `Failed to load snapshot: ${e.inner.message}`;
    return `Could not open '${e.file}': ${e.message}`;
  }
  if (e instanceof VDiskError) return e.file ? `${e.file}: ${e.message}` : e.message;
  if (e instanceof UsageError) return `${e.message}\nTry 'vdisk --help' for more information`;
  if (e instanceof ExitError) return e.message;
  return `internal error: ${(e as Error)?.stack ?? String(e)}`;
}

async function loadKernels(): Promise<void> {
  const dir = new URL('../wasm/', import.meta.url);
  const builds = (name: string) => Promise.all([readFile(new URL(`${name}-simd.wasm`, dir)), readFile(new URL(`${name}-scalar.wasm`, dir))]);
  await Promise.all([
    // Without the built kernels the TypeScript twins give the same answers, slower.
    Promise.all([builds('kernels'), readFile(new URL('kernels-shared.wasm', dir)).catch(() => undefined)])
      .then(([[simd, scalar], shared]) => loadWasmKernels(simd, scalar, { shared }))
      .catch(() => undefined),
    // Without the built decoder, fflate decodes compressed clusters.
    builds('inflate').then(([simd, scalar]) => loadWasmInflate(simd, scalar)).catch(() => undefined),
  ]);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help') {
    process.stdout.write(HELP);
    return cmd === undefined ? 1 : 0;
  }
  if (cmd === '-V' || cmd === '--version') {
    process.stdout.write(`vdisk version ${VERSION}\n`);
    return 0;
  }
  const run = commands[cmd];
  if (!run) {
    process.stderr.write(`vdisk: Command not found: ${cmd}\n`);
    return 1;
  }
  await loadKernels();
  try {
    await run(rest);
    return Number(process.exitCode ?? 0);
  } catch (e) {
    process.stderr.write(`vdisk: ${describe(e)}\n`);
    return e instanceof ExitError ? e.code : 1;
  }
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    // 128 + the signal's number, as a shell reports a process the signal ended (qemu-img has no handler).
    const code = sig === 'SIGINT' ? 130 : 143;
    // A second signal does not wait.
    if (interrupted) process.exit(code);
    interrupted = true;
    // Exiting ends every thread wherever it is, and one ended inside zlib aborts the whole
    // process: the compression threads finish the unit they are on first.
    void abandonOutputs()
      .then(stopCompressing)
      .then(() => process.exit(code));
  });
}

process.exitCode = await main(process.argv.slice(2));
