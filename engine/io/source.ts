/**
 * Byte sources: the only way the engine reads a file. A source reads byte
 * ranges on demand, so an image of any size is never loaded whole. `Blob`/`File`
 * (browser and Node) and in-memory buffers live here; Node file handles live in
 * the CLI, which is the only place allowed to touch `node:fs`.
 */
import { ReadError } from '../errors.ts';

export interface ByteSource {
  /** The name the file was opened by: a path in the CLI, a file name in the browser. */
  readonly name: string;
  /** Length of the file in bytes. */
  readonly size: number;
  /**
   * Reads `length` bytes at `offset`. Bytes past the end of the file read as
   * zero, as a host file does for qemu; drivers check their tables against
   * `size` themselves. When `into` is given it is filled and returned.
   */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
}

/** Checks a request and returns how many bytes of it lie inside the file. */
export function clampRead(src: { name: string; size: number }, offset: number, length: number): number {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new ReadError(src.name, offset, length, 'invalid range');
  }
  return Math.max(0, Math.min(length, src.size - offset));
}

/** A `Blob` or `File`: reads are `Blob.slice(...).arrayBuffer()`, which never load the whole file. */
export class BlobSource implements ByteSource {
  readonly size: number;
  constructor(
    readonly name: string,
    private readonly blob: Blob,
  ) {
    this.size = blob.size;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const out = into ?? new Uint8Array(length);
    const inFile = clampRead(this, offset, length);
    if (inFile > 0) {
      let bytes: ArrayBuffer;
      try {
        bytes = await this.blob.slice(offset, offset + inFile).arrayBuffer();
      } catch (e) {
        throw new ReadError(this.name, offset, length, (e as Error).message);
      }
      out.set(new Uint8Array(bytes), 0);
    }
    out.fill(0, inFile, length);
    return out;
  }
}

/** An in-memory file, for tests and for images the app builds itself. */
export class MemorySource implements ByteSource {
  constructor(
    readonly name: string,
    private readonly bytes: Uint8Array,
  ) {}

  get size(): number {
    return this.bytes.length;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const out = into ?? new Uint8Array(length);
    const inFile = clampRead(this, offset, length);
    out.set(this.bytes.subarray(offset, offset + inFile), 0);
    out.fill(0, inFile, length);
    return out;
  }
}

/** A name with no bytes: where a file is referred to relative to an output that does not exist yet. */
export function nameOnly(name: string): ByteSource {
  return new MemorySource(name, new Uint8Array(0));
}
