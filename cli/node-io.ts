/**
 * Node's side of the engine's I/O: files as byte sources, the opener that
 * resolves referenced files relative to the image as qemu-img does, and a sink
 * that writes a temporary file and renames it into place only when complete.
 */
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BackingFileMissingError, ReadError, type ReferenceKind } from '../engine/errors.ts';
import { clampRead, type ByteSource } from '../engine/io/source.ts';
import { combinePath, type Opener } from '../engine/io/opener.ts';
import type { ByteSink } from '../engine/io/sink.ts';
import type { Workspace } from '../engine/api.ts';

/** strerror() wording for the errno codes a user is likely to meet. */
const STRERROR: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  ELOOP: 'Too many levels of symbolic links',
  EMFILE: 'Too many open files',
};

export function strerror(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return (code && STRERROR[code]) ?? (e as Error).message;
}

export class NodeFileSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly fh: FileHandle,
  ) {}

  /** Opens read-only: inputs are never modified. */
  static async open(path: string): Promise<NodeFileSource> {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      if (st.isDirectory()) throw Object.assign(new Error('Is a directory'), { code: 'EISDIR' });
      return new NodeFileSource(path, st.size, fh);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const out = into ?? new Uint8Array(length);
    const inFile = clampRead(this, offset, length);
    let done = 0;
    while (done < inFile) {
      let n: number;
      try {
        ({ bytesRead: n } = await this.fh.read(out, done, inFile - done, offset + done));
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
};

/** Temporary files of sinks not yet committed, removed if the process is interrupted. */
export const pendingTemps = new Set<string>();

/** Writes `<dir>/.<name>.<random>.part`, renamed to the final name on commit. */
export class NodeFileSink implements ByteSink {
  private constructor(
    readonly name: string,
    private readonly temp: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(path: string): Promise<NodeFileSink> {
    const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.part`);
    const fh = await open(temp, 'wx');
    pendingTemps.add(temp);
    return new NodeFileSink(path, temp, fh);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }

  async commit(length: number): Promise<void> {
    await this.fh.truncate(length);
    await this.fh.close();
    await rename(this.temp, this.name);
    pendingTemps.delete(this.temp);
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => {});
    await unlink(this.temp).catch(() => {});
    pendingTemps.delete(this.temp);
  }
}
