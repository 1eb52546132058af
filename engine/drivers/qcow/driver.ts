/**
 * The qcow (version 1) driver: answers mappings from the L1/L2 tables. An L2
 * entry is unallocated (the backing file answers), the host offset of a data
 * cluster, or a compressed cluster (raw deflate, decoded whole). The format
 * has no zero clusters, no snapshots qemu can read and no backing format:
 * backing files are probed. AES-encrypted images are refused.
 *
 * The L1 table is not stored with a size; it covers the guest size and can
 * be large for big disks, so it is read in pages through a bounded cache, as
 * are L2 tables (at most 64 KiB each).
 */
import { ImageFormatError } from '../../errors.ts';
import { LruCache } from '../../cache.ts';
import type { ByteSource } from '../../io/source.ts';
import type { BackingRef, CompressedUnit, FormatDriver, Layer, LayerFacts, Mapping } from '../../driver.ts';
import { CodecError, inflateRawInto } from '../../codecs/deflate.ts';
import { noSnapshot, viewOf } from '../common.ts';
import { parseBackingName, parseHeader, parseL2Entry, type QcowHeader } from './header.ts';
import * as L from './layout.ts';

/** The L1 table is read this many bytes at a time. */
const L1_PAGE_BYTES = 64 * 1024;
const L1_CACHE_BYTES = 8 * 1024 * 1024;
const L2_CACHE_BYTES = 32 * 1024 * 1024;

const hex = (n: number) => '0x' + n.toString(16);

class QcowLayer implements Layer {
  readonly format = 'qcow';
  readonly size: number;
  private readonly clusterSize: number;
  private readonly l2Bytes: number;
  /** Guest bytes one L2 table covers. */
  private readonly span: number;
  private readonly l1Pages = new LruCache<number, DataView>(L1_CACHE_BYTES, (v) => v.byteLength);
  private readonly l2Tables = new LruCache<number, DataView>(L2_CACHE_BYTES, (v) => v.byteLength);

  constructor(
    readonly source: ByteSource,
    private readonly h: QcowHeader,
    readonly backing: BackingRef | undefined,
  ) {
    // qemu keeps the size in whole sectors.
    this.size = Math.floor(h.size / 512) * 512;
    this.clusterSize = 2 ** h.clusterBits;
    this.l2Bytes = 2 ** h.l2Bits * L.ENTRY_BYTES;
    this.span = this.clusterSize * 2 ** h.l2Bits;
  }

  async getMapping(offset: number, maxLength: number): Promise<Mapping> {
    if (offset >= this.size) return { kind: 'eof', offset, length: 0 };
    const end = Math.min(this.size, offset + maxLength);
    const l1Index = Math.floor(offset / this.span);
    const tableStart = l1Index * this.span;

    const { l2Offset, unallocated } = await this.l1Run(l1Index, Math.ceil(end / this.span) - l1Index);
    if (l2Offset === 0) {
      // Unallocated L2 tables: one answer for as many of them as are in a row.
      return { kind: 'backing', offset, length: Math.min(end, (l1Index + unallocated) * this.span) - offset };
    }
    const l2 = await this.l2Table(l2Offset, l1Index);

    const cs = this.clusterSize;
    const stop = Math.min(end, tableStart + this.span);
    const index = Math.floor((offset - tableStart) / cs);
    const last = Math.ceil((stop - tableStart) / cs);
    const entryAt = l2Offset + index * L.ENTRY_BYTES;
    const first = parseL2Entry(l2, index * L.ENTRY_BYTES, this.h.clusterBits);

    if (first.kind === 'compressed') {
      const clusterStart = tableStart + index * cs;
      if (first.hostOffset >= this.source.size || first.hostLength === 0) {
        throw this.fail('L2 table', entryAt, `compressed cluster of ${first.hostLength} bytes at ${hex(first.hostOffset)} is invalid or lies past the end of the file`);
      }
      const unit: CompressedUnit = { guestOffset: clusterStart, size: cs, source: this.source, hostOffset: first.hostOffset, hostLength: first.hostLength };
      return { kind: 'compressed', offset, length: Math.min(stop, clusterStart + cs) - offset, unit };
    }

    // The run: unallocated entries (all zero bits), or data clusters in a row in the file.
    let i = index + 1;
    if (first.kind === 'unallocated') {
      while (i < last && l2.getUint32(i * L.ENTRY_BYTES) === 0 && l2.getUint32(i * L.ENTRY_BYTES + 4) === 0) i++;
      return { kind: 'backing', offset, length: Math.min(stop, tableStart + i * cs) - offset };
    }
    if (first.hostOffset % cs !== 0 || first.hostOffset >= this.source.size) {
      throw this.fail('L2 table', entryAt, `data cluster at ${hex(first.hostOffset)} is unaligned or lies past the end of the file`);
    }
    for (; i < last; i++) {
      const want = first.hostOffset + (i - index) * cs;
      const e = l2.getUint32(i * L.ENTRY_BYTES) * 0x1_0000_0000 + l2.getUint32(i * L.ENTRY_BYTES + 4);
      if (e !== want || want >= this.source.size) break;
    }
    const hostOffset = first.hostOffset + (offset % cs);
    return { kind: 'data', offset, length: Math.min(stop, tableStart + i * cs) - offset, source: this.source, hostOffset };
  }

  async decode(unit: CompressedUnit, out: Uint8Array): Promise<void> {
    const input = await unit.source.read(unit.hostOffset, Math.min(unit.hostLength, unit.source.size - unit.hostOffset));
    try {
      inflateRawInto(input, out);
    } catch (e) {
      if (e instanceof CodecError) throw this.fail('compressed cluster', unit.hostOffset, e.message);
      throw e;
    }
  }

  facts(): LayerFacts {
    return { clusterSize: this.clusterSize, dirty: false };
  }

  snapshots() {
    return [];
  }

  atSnapshot(): Promise<Layer> {
    return noSnapshot(this.source);
  }

  /**
   * L1 entry `index` (the raw u64 host offset of an L2 table, 0 for none)
   * and, when it is 0, how many entries from it are 0, at most `limit`.
   */
  private async l1Run(index: number, limit: number): Promise<{ l2Offset: number; unallocated: number }> {
    let count = 0;
    while (count < limit) {
      const byte = (index + count) * L.ENTRY_BYTES;
      const page = Math.floor(byte / L1_PAGE_BYTES);
      const view = await this.l1Pages.getOrLoad(page, async () => {
        const start = page * L1_PAGE_BYTES;
        const length = Math.min(L1_PAGE_BYTES, this.h.l1Size * L.ENTRY_BYTES - start);
        return viewOf(await this.source.read(this.h.l1TableOffset + start, length));
      });
      for (let at = byte - page * L1_PAGE_BYTES; at < view.byteLength && count < limit; at += L.ENTRY_BYTES) {
        const e = view.getUint32(at) * 0x1_0000_0000 + view.getUint32(at + 4);
        if (e !== 0) return count === 0 ? { l2Offset: e, unallocated: 0 } : { l2Offset: 0, unallocated: count };
        count++;
      }
    }
    return { l2Offset: 0, unallocated: count };
  }

  private l2Table(offset: number, l1Index: number): Promise<DataView> {
    return this.l2Tables.getOrLoad(offset, async () => {
      if (offset + this.l2Bytes > this.source.size) {
        throw this.fail('L1 table', this.h.l1TableOffset + l1Index * L.ENTRY_BYTES, `L2 table at ${hex(offset)} (L1 index ${l1Index}) lies past the end of the file`);
      }
      return viewOf(await this.source.read(offset, this.l2Bytes));
    });
  }

  private fail(structure: string, offset: number, detail: string): ImageFormatError {
    return new ImageFormatError(this.source.name, structure, offset, detail);
  }
}

async function open(source: ByteSource): Promise<Layer> {
  const h = parseHeader(await source.read(0, L.HEADER_LENGTH), source.name);
  const l1Bytes = h.l1Size * L.ENTRY_BYTES;
  // qemu reads a table past the end of the file as zeros; a table there is damage, refused here.
  if (h.l1TableOffset + l1Bytes > source.size) {
    throw new ImageFormatError(source.name, 'L1 table', h.l1TableOffset, `L1 table of ${l1Bytes} bytes lies past the end of the file (${source.size} bytes)`);
  }
  let backing: BackingRef | undefined;
  if (h.backingFileOffset !== 0) {
    const name = parseBackingName(await source.read(h.backingFileOffset, h.backingFileSize));
    if (name !== undefined) backing = { name };
  }
  return new QcowLayer(source, h, backing);
}

export const qcowDriver: FormatDriver = {
  name: 'qcow',
  probe: (head) => {
    if (head.length < L.HEADER_LENGTH) return 0;
    const v = viewOf(head);
    return v.getUint32(L.H.magic) === L.MAGIC && v.getUint32(L.H.version) === L.VERSION ? 100 : 0;
  },
  open,
};
