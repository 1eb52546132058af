/**
 * The QED driver: answers mappings from the two-level L1/L2 tables. An entry
 * is unallocated (the backing file answers), a zero cluster, or the offset of
 * a data cluster; there is no compression. Tables can reach 1 GiB (16
 * clusters of 64 MiB), so they are read in pages through a bounded cache,
 * never whole. The backing file is only named here (`layer.backing`); the
 * "no probe" feature bit says it is raw.
 */
import { ImageFormatError } from '../../errors.ts';
import { LruCache } from '../../cache.ts';
import type { ByteSource } from '../../io/source.ts';
import type { BackingRef, CheckResult, FormatDriver, Layer, LayerFacts, Mapping, OpenContext } from '../../driver.ts';
import { noSnapshot, u64le, viewOf } from '../common.ts';
import { clusterFits, parseBackingName, parseHeader, tableFits, type QedHeader } from './header.ts';
import { checkQed } from './check.ts';
import * as L from './layout.ts';

/** Table pages are read this many bytes at a time (or the whole table, when smaller). */
const PAGE_BYTES = 64 * 1024;
/** Budget for cached table pages per image. */
const TABLE_CACHE_BYTES = 32 * 1024 * 1024;
/** qemu counts a file's length in these (bdrv_getlength rounds it up). */
const SECTOR = 512;

const hex = (n: number) => '0x' + n.toString(16);

class QedLayer implements Layer {
  readonly format = 'qed';
  readonly size: number;
  private readonly clusterSize: number;
  /** Entries per table. */
  private readonly entries: number;
  /** Guest bytes one L2 table covers. */
  private readonly span: number;
  private readonly pageBytes: number;
  private readonly tableBytes: number;
  private readonly pages = new LruCache<number, DataView>(TABLE_CACHE_BYTES, (v) => v.byteLength);

  constructor(
    readonly source: ByteSource,
    private readonly h: QedHeader,
    readonly backing: BackingRef | undefined,
  ) {
    this.size = h.imageSize;
    this.clusterSize = h.clusterSize;
    const tableBytes = h.tableSize * h.clusterSize;
    this.tableBytes = tableBytes;
    this.entries = tableBytes / L.ENTRY_BYTES;
    this.span = this.entries * h.clusterSize;
    this.pageBytes = Math.min(PAGE_BYTES, tableBytes);
  }

  async getMapping(offset: number, maxLength: number): Promise<Mapping> {
    if (offset >= this.size) return { kind: 'eof', offset, length: 0 };
    const end = Math.min(this.size, offset + maxLength);
    const l1Offset = this.h.l1TableOffset;
    const l1Index = Math.floor(offset / this.span);
    const tableStart = l1Index * this.span;

    // Unallocated L2 tables: one answer for as many of them as are in a row.
    const l1 = await this.run(l1Offset, l1Index, Math.ceil(end / this.span) - l1Index, (head, e) => head === L.UNALLOCATED && e === L.UNALLOCATED);
    if (l1.first === L.UNALLOCATED) {
      return { kind: 'backing', offset, length: Math.min(end, tableStart + l1.count * this.span) - offset };
    }
    const l2Offset = l1.first;
    if (!tableFits(this.h, l2Offset)) {
      throw this.fail('L1 table', l1Offset + l1Index * L.ENTRY_BYTES, `L2 table offset ${hex(l2Offset)} is invalid (L1 index ${l1Index})`);
    }
    if (this.inL1(l2Offset, this.tableBytes)) {
      throw this.fail('L1 table', l1Offset + l1Index * L.ENTRY_BYTES, `L2 table at ${hex(l2Offset)} overlaps the L1 table (L1 index ${l1Index})`);
    }

    const cs = this.clusterSize;
    const stop = Math.min(end, tableStart + this.span);
    const index = Math.floor((offset - tableStart) / cs);
    const { first, count } = await this.run(l2Offset, index, Math.ceil((stop - tableStart) / cs) - index, (head, e, k) => {
      if (head === L.UNALLOCATED || head === L.ZERO_CLUSTER) return e === head;
      // Data clusters in a row, each one valid (the next call reports a bad one).
      return e === head + k * cs && clusterFits(this.h, e);
    });
    const length = Math.min(stop, tableStart + (index + count) * cs) - offset;
    if (first === L.UNALLOCATED) return { kind: 'backing', offset, length };
    if (first === L.ZERO_CLUSTER) return { kind: 'zero', offset, length };
    if (!clusterFits(this.h, first)) {
      throw this.fail('L2 table', l2Offset + index * L.ENTRY_BYTES, `data cluster offset ${hex(first)} is invalid (L1 index ${l1Index}, L2 index ${index})`);
    }
    // qemu reads such a cluster; its bytes would be the L1 table's, so it is refused, as past the end of the file is.
    if (this.inL1(first, count * cs)) {
      throw this.fail('L2 table', l2Offset + index * L.ENTRY_BYTES, `data cluster at ${hex(first)} overlaps the L1 table (L1 index ${l1Index}, L2 index ${index})`);
    }
    return { kind: 'data', offset, length, source: this.source, hostOffset: first + (offset % cs) };
  }

  async decode(): Promise<void> {
    throw new Error('qed has no compressed units');
  }

  /**
   * `dirty` is false even when the needs-check bit is set, as qemu-img 7.2
   * reports it: qemu drains an image right after opening it, and draining
   * runs the "need check" timer early, which clears the bit in memory (its
   * write back fails on a read-only file) before info is asked.
   */
  facts(): LayerFacts {
    return { clusterSize: this.clusterSize, dirty: false };
  }

  snapshots() {
    return [];
  }

  atSnapshot(): Promise<Layer> {
    return noSnapshot(this.source);
  }

  /** qemu-img check's findings, on the file as qemu reads it (see `open`). */
  check(signal?: AbortSignal): Promise<CheckResult> {
    return checkQed(this.source, this.h, signal);
  }

  /**
   * Reads entry `index` of the table at `tableOffset` and the ones after it
   * while `same(first, entry, k)` holds for the k-th of them, taking at most
   * `limit` entries; returns the first entry and how many were taken.
   */
  private async run(
    tableOffset: number,
    index: number,
    limit: number,
    same: (first: number, entry: number, k: number) => boolean,
  ): Promise<{ first: number; count: number }> {
    let first = 0;
    let count = 0;
    while (count < limit) {
      const byte = (index + count) * L.ENTRY_BYTES;
      const pageStart = byte - (byte % this.pageBytes);
      const page = await this.page(tableOffset + pageStart);
      for (let at = byte - pageStart; at < page.byteLength && count < limit; at += L.ENTRY_BYTES) {
        const e = u64le(page, at);
        if (count === 0) first = e;
        else if (!same(first, e, count)) return { first, count };
        count++;
      }
    }
    return { first, count };
  }

  /** A page of a table; tables were checked to lie in the file, and pages divide them evenly. */
  private page(hostOffset: number): Promise<DataView> {
    return this.pages.getOrLoad(hostOffset, async () => viewOf(await this.source.read(hostOffset, this.pageBytes)));
  }

  /** True when [start, start + length) overlaps the L1 table (the header is kept out by clusterFits). */
  private inL1(start: number, length: number): boolean {
    const l1 = this.h.l1TableOffset;
    return start < l1 + this.tableBytes && l1 < start + length;
  }

  private fail(structure: string, offset: number, detail: string): ImageFormatError {
    return new ImageFormatError(this.source.name, structure, offset, detail);
  }
}

async function open(source: ByteSource, ctx: OpenContext): Promise<Layer> {
  // qemu sees the file's length in whole sectors; opened for a check, so does this driver.
  const length = ctx.forCheck ? Math.ceil(source.size / SECTOR) * SECTOR : source.size;
  const h = parseHeader(await source.read(0, L.HEADER_LENGTH), length, source.name);
  let backing: BackingRef | undefined;
  if (h.backingName) {
    const name = parseBackingName(await source.read(h.backingName.offset, h.backingName.size));
    // Without the "no probe" bit qemu records no backing format: the backing file is probed.
    if (name !== undefined) backing = h.features & L.F_BACKING_FORMAT_NO_PROBE ? { name, format: 'raw' } : { name };
  }
  return new QedLayer(source, h, backing);
}

export const qedDriver: FormatDriver = {
  name: 'qed',
  probe: (head) => (head.length >= L.HEADER_LENGTH && viewOf(head).getUint32(L.H.magic, true) === L.MAGIC ? 100 : 0),
  open,
};
