/**
 * The VHDX block allocation table (2.5): its geometry, its entries read a
 * page at a time through a bounded cache, and the check of every allocated
 * entry that opening does (as qemu does) so that a block pointing past the
 * end of the file or into the log or metadata is refused up front.
 */
import { ImageFormatError } from '../../errors.ts';
import { LruCache } from '../../cache.ts';
import type { ByteSource } from '../../io/source.ts';
import { viewOf } from '../common.ts';
import type { Region } from './header.ts';
import * as L from './layout.ts';

/** Entries per cached page (64 KiB). */
const PAGE_ENTRIES = 8192;
const PAGE_CACHE_BYTES = 8 * 1024 * 1024;

export interface BatEntry {
  state: number;
  /** FileOffsetMB in bytes. */
  offset: number;
}

export interface Geometry {
  size: number;
  blockSize: number;
  logicalSectorSize: number;
  /** Payload blocks per chunk, i.e. per sector bitmap block (2.5). */
  chunkRatio: number;
  dataBlocks: number;
  /** BAT entries, payload and sector bitmap ones interleaved. */
  entries: number;
  hasParent: boolean;
}

/** 2.5: chunk ratio, block counts and the number of BAT entries of a disk. */
export function geometry(size: number, blockSize: number, logicalSectorSize: number, hasParent: boolean): Geometry {
  const chunkRatio = (L.SECTORS_PER_CHUNK * logicalSectorSize) / blockSize;
  const dataBlocks = Math.ceil(size / blockSize);
  const bitmapBlocks = Math.ceil(dataBlocks / chunkRatio);
  // Differencing files have a sector bitmap entry after every chunk, the last one too.
  const entries = hasParent ? bitmapBlocks * (chunkRatio + 1) : dataBlocks === 0 ? 0 : dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
  return { size, blockSize, logicalSectorSize, chunkRatio, dataBlocks, entries, hasParent };
}

/** 2.5: payload block `block`'s BAT index: a sector bitmap entry follows every chunkRatio payload entries. */
export const payloadIndex = (g: Geometry, block: number): number => block + Math.floor(block / g.chunkRatio);
/** 2.5: the sector bitmap entry of chunk `chunk`. */
export const bitmapIndex = (g: Geometry, chunk: number): number => chunk * (g.chunkRatio + 1) + g.chunkRatio;

/** The state of the entry in `slot` of a page. */
export const stateAt = (page: DataView, slot: number): number => page.getUint32(slot * L.BAT_ENTRY_SIZE, true) & L.BAT_STATE_MASK;

/** What the high word and a FileOffsetMB unit weigh, computed once: `**` on variables is slow in a hot loop. */
const HIGH_WORD_MB = 2 ** (32 - L.BAT_OFFSET_SHIFT);
const OFFSET_UNIT = 2 ** L.BAT_OFFSET_SHIFT;

/** FileOffsetMB of the entry in `slot` of a page, in bytes: bits 20..63 of the entry, times 1 MiB. */
export function offsetAt(page: DataView, slot: number): number {
  const lo = page.getUint32(slot * L.BAT_ENTRY_SIZE, true);
  const hi = page.getUint32(slot * L.BAT_ENTRY_SIZE + 4, true);
  return (hi * HIGH_WORD_MB + (lo >>> L.BAT_OFFSET_SHIFT)) * OFFSET_UNIT;
}

export class Bat {
  private readonly pages = new LruCache<number, DataView>(PAGE_CACHE_BYTES, (v) => v.byteLength);

  constructor(
    private readonly source: ByteSource,
    readonly region: Region,
    readonly g: Geometry,
  ) {}

  /** The page holding entry `index`, and the entry's slot in it. */
  async pageOf(index: number): Promise<{ page: DataView; first: number }> {
    const n = Math.floor(index / PAGE_ENTRIES);
    const first = n * PAGE_ENTRIES;
    const page = await this.pages.getOrLoad(n, async () => {
      const count = Math.min(PAGE_ENTRIES, this.g.entries - first);
      return viewOf(await this.source.read(this.region.fileOffset + first * L.BAT_ENTRY_SIZE, count * L.BAT_ENTRY_SIZE));
    });
    return { page, first };
  }

  async entry(index: number): Promise<BatEntry> {
    const { page, first } = await this.pageOf(index);
    return { state: stateAt(page, index - first), offset: offsetAt(page, index - first) };
  }

  /**
   * Every present payload block (and, in a differencing file, every present
   * sector bitmap block) must lie inside the file and clear of the header
   * section, the log, the BAT and the metadata (`reserved`). A partial last
   * block need only be present up to the end of the disk, as qemu allows.
   */
  async check(fileSize: number, reserved: Region[]): Promise<void> {
    const g = this.g;
    for (let index = 0; index < g.entries; ) {
      const { page, first } = await this.pageOf(index);
      const end = Math.min(g.entries, first + page.byteLength / L.BAT_ENTRY_SIZE);
      for (; index < end; index++) {
        const state = stateAt(page, index - first);
        // Only present blocks have a place to check (SB_BLOCK_PRESENT and FULLY_PRESENT are both 6).
        if (state !== L.PAYLOAD_BLOCK_FULLY_PRESENT && state !== L.PAYLOAD_BLOCK_PARTIALLY_PRESENT) continue;
        const isBitmap = index % (g.chunkRatio + 1) === g.chunkRatio;
        let length: number;
        if (isBitmap) {
          if (!g.hasParent || state !== L.SB_BLOCK_PRESENT) continue;
          length = L.SECTOR_BITMAP_BLOCK_SIZE;
        } else {
          const block = index - Math.floor(index / (g.chunkRatio + 1));
          length = Math.min(g.blockSize, g.size - block * g.blockSize);
        }
        this.checkPlace(index, offsetAt(page, index - first), length, isBitmap, fileSize, reserved);
      }
    }
  }

  private checkPlace(index: number, offset: number, length: number, isBitmap: boolean, fileSize: number, reserved: Region[]): void {
    const what = isBitmap ? 'sector bitmap block' : 'payload block';
    const fail = (detail: string) =>
      new ImageFormatError(this.source.name, 'BAT', this.region.fileOffset + index * L.BAT_ENTRY_SIZE, `entry ${index}: ${what} ${detail}`);
    if (offset + length > fileSize) {
      throw fail(`at offset ${offset} (${length} bytes) lies past the end of the file (${fileSize} bytes); the image was probably truncated`);
    }
    const span = isBitmap ? length : this.g.blockSize;
    const hit = reserved.find((r) => offset < r.fileOffset + r.length && r.fileOffset < offset + span);
    if (hit) throw fail(`at offset ${offset} overlaps the metadata at ${hit.fileOffset} (${hit.length} bytes)`);
  }
}
