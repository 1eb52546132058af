/**
 * A table of 32-bit little-endian entries, one per guest block: the VDI block
 * map, the Parallels BAT. Formats like these keep one flat table for the whole
 * disk; it is read on demand in fixed chunks through a bounded cache, so a
 * table of any size costs a fixed amount of memory. The caller checks that the
 * table lies inside the file before making one.
 */
import { LruCache } from '../cache.ts';
import type { ByteSource } from '../io/source.ts';
import { viewOf } from './common.ts';

/** Entries per chunk: 64 KiB of table, 16 GiB of guest with 1 MiB blocks. */
const CHUNK_ENTRIES = 16384;
/** Cache budget per table. */
const CACHE_BYTES = 4 * 1024 * 1024;

export class BlockTable {
  private readonly cache = new LruCache<number, DataView>(CACHE_BYTES, (v) => v.byteLength);

  constructor(
    private readonly source: ByteSource,
    /** Where the table starts in the file. */
    readonly offset: number,
    /** How many entries it has. */
    readonly entries: number,
  ) {}

  /**
   * Calls `visit(index, entry)` for the entries from `first` on, in order,
   * until it returns false or `end` (exclusive, at most `entries`) is reached.
   * Returns the index it stopped at.
   */
  async walk(first: number, end: number, visit: (index: number, entry: number) => boolean): Promise<number> {
    const stopAt = Math.min(end, this.entries);
    let i = first;
    while (i < stopAt) {
      const chunk = Math.floor(i / CHUNK_ENTRIES);
      const base = chunk * CHUNK_ENTRIES;
      const view = await this.chunk(chunk);
      const chunkEnd = Math.min(stopAt, base + CHUNK_ENTRIES);
      for (; i < chunkEnd; i++) {
        if (!visit(i, view.getUint32((i - base) * 4, true))) return i;
      }
    }
    return i;
  }

  private chunk(chunk: number): Promise<DataView> {
    return this.cache.getOrLoad(chunk, async () => {
      const first = chunk * CHUNK_ENTRIES;
      const count = Math.min(CHUNK_ENTRIES, this.entries - first);
      return viewOf(await this.source.read(this.offset + first * 4, count * 4));
    });
  }
}
