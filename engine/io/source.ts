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

/**
 * Reads at least this long go through whole aligned blocks of `BLOCK` bytes:
 * each Blob read costs a round trip to the browser process, so the 2 MiB
 * steps of compare and convert read several times slower than 8 MiB ones.
 */
const LARGE_READ = 512 * 1024;
const BLOCK = 8 * 1024 * 1024;
/** Blocks read ahead of a sequential scan. */
const READ_AHEAD = 2;
/** Blocks kept per source: the one being consumed, the ones read ahead, and two more for reads running at once. */
const BLOCKS_KEPT = READ_AHEAD + 3;

/**
 * A `Blob` or `File`: reads are `Blob.slice(...).arrayBuffer()`, which never
 * load the whole file. Small reads (headers, tables) are read as asked; large
 * ones are served from a few blocks, and reading a block that follows the
 * last one starts reading the next, so a sequential scan never waits on a
 * round trip.
 */
export class BlobSource implements ByteSource {
  readonly size: number;
  /** Block index → its bytes, least recently used first. */
  private readonly blocks = new Map<number, Promise<Uint8Array>>();
  private lastBlock = -2;

  constructor(
    readonly name: string,
    private readonly blob: Blob,
  ) {
    this.size = blob.size;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const out = into ?? new Uint8Array(length);
    const inFile = clampRead(this, offset, length);
    if (inFile >= LARGE_READ && inFile <= BLOCK) {
      for (let at = 0; at < inFile; ) {
        const index = Math.floor((offset + at) / BLOCK);
        const block = await this.block(index);
        const from = offset + at - index * BLOCK;
        const n = Math.min(inFile - at, block.length - from);
        out.set(block.subarray(from, from + n), at);
        at += n;
      }
    } else if (inFile > 0) {
      out.set(await this.slice(offset, inFile), 0);
    }
    out.fill(0, inFile, length);
    return out;
  }

  private block(index: number): Promise<Uint8Array> {
    const sequential = index === this.lastBlock + 1;
    this.lastBlock = index;
    const block = this.cached(index);
    if (sequential) for (let ahead = index + 1; ahead <= index + READ_AHEAD && ahead * BLOCK < this.size; ahead++) this.cached(ahead);
    return block;
  }

  private cached(index: number): Promise<Uint8Array> {
    let p = this.blocks.get(index);
    if (p) this.blocks.delete(index);
    else {
      const start = index * BLOCK;
      p = this.slice(start, Math.min(BLOCK, this.size - start));
      // A failed read is not kept: the next attempt reads again.
      const read = p;
      read.catch(() => {
        if (this.blocks.get(index) === read) this.blocks.delete(index);
      });
    }
    this.blocks.set(index, p);
    while (this.blocks.size > BLOCKS_KEPT) this.blocks.delete(this.blocks.keys().next().value!);
    return p;
  }

  private async slice(offset: number, length: number): Promise<Uint8Array> {
    try {
      return new Uint8Array(await this.blob.slice(offset, offset + length).arrayBuffer());
    } catch (e) {
      throw new ReadError(this.name, offset, length, (e as Error).message);
    }
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
