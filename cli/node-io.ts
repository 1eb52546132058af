/**
 * Node's side of the engine's I/O: files as byte sources, the opener that
 * resolves referenced files relative to the image as qemu-img does, and a sink
 * that writes a temporary file (past its first MiBs through a write thread of
 * its own) and renames it into place only when complete.
 */
import * as fs from 'node:fs';
import { lstat, open, realpath, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BackingFileMissingError, CancelledError, ReadError, VDiskError, type ReferenceKind } from '../engine/errors.ts';
import { clampRead, type ByteSource } from '../engine/io/source.ts';
import { combinePath, type Opener } from '../engine/io/opener.ts';
import type { ByteSink } from '../engine/io/sink.ts';
import type { Workspace } from '../engine/api.ts';
import { kernels } from '../engine/kernels/index.ts';
import { WRITE_PIECE, WriteFailure, WriteThread } from './write-thread.ts';

/** strerror() wording for the errno codes a user is likely to meet. */
const STRERROR: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  ELOOP: 'Too many levels of symbolic links',
  EMFILE: 'Too many open files',
  ENOSPC: 'No space left on device',
  EFBIG: 'File too large',
  EROFS: 'Read-only file system',
  EDQUOT: 'Disk quota exceeded',
  EIO: 'Input/output error',
};

export function strerror(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return (code && STRERROR[code]) ?? (e as Error).message;
}

const fsOpen = promisify(fs.open);
const fsRead = promisify(fs.read);
const fsFstat = promisify(fs.fstat);

/**
 * A file read by positioned reads on a plain descriptor. Descriptors live as
 * long as the process (a CLI run), which closes them on exit.
 */
export class NodeFileSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly fd: number,
  ) {}

  /** Opens read-only: inputs are never modified. */
  static async open(path: string): Promise<NodeFileSource> {
    const fd = await fsOpen(path, 'r');
    const st = await fsFstat(fd);
    if (st.isDirectory()) {
      fs.closeSync(fd);
      throw Object.assign(new Error('Is a directory'), { code: 'EISDIR' });
    }
    return new NodeFileSource(path, st.size, fd);
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const out = into ?? new Uint8Array(length);
    const inFile = clampRead(this, offset, length);
    let done = 0;
    while (done < inFile) {
      let n: number;
      try {
        ({ bytesRead: n } = await fsRead(this.fd, out, done, inFile - done, offset + done));
      } catch (e) {
        throw new ReadError(this.name, offset + done, inFile - done, strerror(e));
      }
      if (n === 0) break;
      done += n;
    }
    out.fill(0, done, length);
    return out;
  }
}

async function openOrMissing(name: string, path: string, kind: ReferenceKind): Promise<NodeFileSource> {
  try {
    return await NodeFileSource.open(path);
  } catch (e) {
    throw new BackingFileMissingError(name, path, kind, strerror(e));
  }
}

/** Resolves references relative to the referring image's directory, as qemu-img does. */
export const nodeOpener: Opener = {
  resolve: (name, from) => combinePath(from.name, name),
  open: (name, from, kind) => openOrMissing(name, combinePath(from.name, name), kind),
};

export const nodeWorkspace: Workspace = {
  opener: nodeOpener,
  open: (name) => openOrMissing(name, name, 'image'),
  readsAhead: true,
};

/**
 * Temporary files of sinks not yet committed, each with its opening (the file
 * exists once that settles), and whether the process is being interrupted.
 */
const temporaries = new Map<string, Promise<unknown>>();
let interrupted = false;

/**
 * For a process about to exit on a signal: no output is started or committed
 * from now on, and every temporary file is removed, including one whose
 * opening was still under way.
 */
export async function abandonOutputs(): Promise<void> {
  interrupted = true;
  await Promise.allSettled(temporaries.values());
  for (const temp of temporaries.keys()) {
    try {
      fs.unlinkSync(temp);
    } catch {
      // Already gone.
    }
  }
}

/** The output file could not be started (qemu's "Could not create"). */
export class CreateError extends VDiskError {
  constructor(path: string, detail: string) {
    super(path, `Could not create '${path}': ${detail}`);
  }
}

/** A write to an output file failed (qemu-img's wording, with the offset in that file). */
export class WriteError extends VDiskError {
  constructor(
    file: string,
    readonly offset: number,
    detail: string,
  ) {
    super(file, `error while writing at byte ${offset}: ${detail}`);
  }
}

/**
 * Bytes written straight from this thread before the file gets a write
 * thread of its own: a small output is done before a thread would have started.
 */
const THREAD_AFTER = 16 * 1024 * 1024;

/**
 * Writes `<dir>/.<name>.<random>.part`, renamed to the final name on commit.
 * The final name must be free or a regular file (or a link to one, which is
 * followed): a rename would otherwise replace a device or a folder.
 */
export class NodeFileSink implements ByteSink {
  /** Bytes written from this thread so far; past THREAD_AFTER, `thread` writes. */
  private direct = 0;
  private thread: WriteThread | undefined;

  private constructor(
    readonly name: string,
    /** Where the file is renamed to: `name`, or the file a link there points to. */
    private readonly target: string,
    private readonly temp: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(path: string): Promise<NodeFileSink> {
    const target = await writableTarget(path);
    const temp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.part`);
    if (interrupted) throw new CancelledError(path);
    const opening = open(temp, 'wx');
    temporaries.set(temp, opening);
    let fh: FileHandle;
    try {
      fh = await opening;
    } catch (e) {
      temporaries.delete(temp);
      throw new CreateError(path, strerror(e));
    }
    return new NodeFileSink(path, target, temp, fh);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (!this.thread && this.direct >= THREAD_AFTER) this.thread = new WriteThread(this.fh.fd, kernels().shared);
    if (this.thread) return this.threaded(() => this.thread!.write(offset, data));
    for (let done = 0; done < data.length; ) {
      try {
        const { bytesWritten } = await this.fh.write(data, done, Math.min(data.length - done, WRITE_PIECE), offset + done);
        done += bytesWritten;
        this.direct += bytesWritten;
      } catch (e) {
        throw new WriteError(this.name, offset + done, strerror(e));
      }
    }
  }

  async commit(length: number): Promise<void> {
    if (this.thread) await this.threaded(() => this.thread!.finish());
    try {
      await this.fh.truncate(length);
    } catch (e) {
      throw new WriteError(this.name, length, strerror(e));
    }
    await this.fh.close();
    if (interrupted) throw new CancelledError(this.name);
    await rename(this.temp, this.target);
    temporaries.delete(this.temp);
  }

  async abort(): Promise<void> {
    await this.thread?.stop();
    await this.fh.close().catch(() => {});
    await unlink(this.temp).catch(() => {});
    temporaries.delete(this.temp);
  }

  /** Runs a step of the write thread, reporting a write it failed as this file's WriteError. */
  private async threaded(step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (e) {
      if (!(e instanceof WriteFailure)) throw e;
      throw new WriteError(this.name, e.offset, strerror(e.error));
    }
  }
}

/** The file a sink for `path` ends up as: `path`, or the regular file a link there points to. */
async function writableTarget(path: string): Promise<string> {
  let st;
  try {
    st = await lstat(path);
  } catch {
    // Nothing there yet (a missing folder shows when the temporary file is opened).
    return path;
  }
  if (st.isSymbolicLink()) {
    try {
      [path, st] = await Promise.all([realpath(path), stat(path)]);
    } catch (e) {
      throw new CreateError(path, strerror(e));
    }
  }
  if (st.isDirectory()) throw new CreateError(path, 'Is a directory');
  if (!st.isFile()) throw new CreateError(path, 'Not a regular file (vdisk writes images to regular files only)');
  return path;
}
