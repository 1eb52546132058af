// Helpers that run qemu-img and the vdisk CLI side by side for the
// conformance tests.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The built CLI; VDISK_CLI may name another build of it. */
export const VDISK = process.env.VDISK_CLI ? resolve(process.env.VDISK_CLI) : join(ROOT, 'dist', 'cli', 'vdisk.mjs');
export const QEMU_IMG = process.env.QEMU_IMG ?? 'qemu-img';

/** Longest a single qemu-img or vdisk run may take before it is killed. */
export const RUN_TIMEOUT_MS = 50_000;

/** One entry of `map --output=json`, as qemu-img prints it. */
export interface MapJsonEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
}

export interface RunResult {
  /** Exit status; null when the process was killed (see signal). */
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Set when the process could not be started or was killed on timeout. */
  error?: Error;
}

export interface RunOptions {
  /** Working directory; relative file names are resolved against it. */
  cwd?: string;
  timeoutMs?: number;
}

export function run(command: string, args: readonly string[], options: RunOptions = {}): RunResult {
  const result = spawnSync(command, args, {
    cwd: options.cwd ?? ROOT,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    timeout: options.timeoutMs ?? RUN_TIMEOUT_MS,
    killSignal: 'SIGKILL',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return {
    status: result.status,
    signal: result.signal,
    stdout: result.stdout ?? '',
    stderr: result.stderr ?? '',
    error: result.error,
  };
}

/** Runs `qemu-img ARGS...` in cwd. */
export function qemuImg(args: readonly string[], options: RunOptions = {}): RunResult {
  return run(QEMU_IMG, args, options);
}

/** Runs `node dist/cli/vdisk.mjs ARGS...` in cwd. */
export function vdisk(args: readonly string[], options: RunOptions = {}): RunResult {
  return run(process.execPath, [VDISK, ...args], options);
}

/** A one-line account of a run, for assertion messages. */
export function describeRun(label: string, r: RunResult): string {
  const how = r.status !== null ? `exit ${r.status}` : `killed by ${r.signal ?? 'unknown signal'}`;
  const err = r.error ? ` (${r.error.message})` : '';
  return `${label}: ${how}${err}; stderr: ${JSON.stringify(r.stderr)}`;
}

/** SHA-256 of a file, read as a stream. */
export function hashFile(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash('sha256');
    const stream = createReadStream(path, { highWaterMark: 1024 * 1024 });
    stream.on('error', reject);
    stream.on('data', (chunk) => hash.update(chunk));
    stream.on('end', () => resolvePromise(hash.digest('hex')));
  });
}

/**
 * SHA-256 of each chunkSize piece of a file, read as a stream, so that two
 * files can be compared without holding either and the first difference
 * can be located.
 */
export function chunkHashes(path: string, chunkSize: number): Promise<string[]> {
  return new Promise((resolvePromise, reject) => {
    const hashes: string[] = [];
    let hash = createHash('sha256');
    let filled = 0;
    const stream = createReadStream(path, { highWaterMark: chunkSize });
    stream.on('error', reject);
    stream.on('data', (data) => {
      let chunk = data as Buffer;
      while (chunk.length > 0) {
        const take = Math.min(chunk.length, chunkSize - filled);
        hash.update(chunk.subarray(0, take));
        filled += take;
        chunk = chunk.subarray(take);
        if (filled === chunkSize) {
          hashes.push(hash.digest('hex'));
          hash = createHash('sha256');
          filled = 0;
        }
      }
    });
    stream.on('end', () => {
      if (filled > 0) hashes.push(hash.digest('hex'));
      resolvePromise(hashes);
    });
  });
}
