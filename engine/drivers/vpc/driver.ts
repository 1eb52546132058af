/**
 * The VHD driver (qemu's `vpc`): fixed disks (the guest bytes, then a
 * footer), dynamic disks (a block allocation table and blocks that each start
 * with a sector bitmap) and differencing disks (a dynamic disk whose absent
 * sectors are the parent's, named by parent locators). It finds the footer and
 * sizes the disk as qemu 7.2 does, and refuses what qemu refuses at open.
 */
import { ImageFormatError } from '../../errors.ts';
import { LruCache } from '../../cache.ts';
import type { ByteSource } from '../../io/source.ts';
import type { BackingRef, FormatDriver, Layer, LayerFacts, Mapping } from '../../driver.ts';
import { noSnapshot, viewOf } from '../common.ts';
import { FlatLayer } from '../raw/driver.ts';
import {
  decodeLocator,
  hasFooterCookie,
  parseDynHeader,
  parseFooter,
  preferredLocator,
  sectorPresent,
  virtualSectors,
  type DynHeader,
  type VhdFooter,
} from './header.ts';
import * as L from './layout.ts';

/** BAT entries read at once: 64 KiB, the whole table of a disk up to 32 GiB with 2 MiB blocks. */
const BAT_PAGE_ENTRIES = 16384;
const BAT_CACHE_BYTES = 8 * 1024 * 1024;
const BITMAP_CACHE_BYTES = 4 * 1024 * 1024;

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

/** A dynamic or differencing disk: blocks found through the BAT, sectors through each block's bitmap. */
class SparseLayer implements Layer {
  readonly format = 'vpc';
  private readonly blockSize: number;
  private readonly bitmapBytes: number;
  private readonly batPages = new LruCache<number, DataView>(BAT_CACHE_BYTES, (v) => v.byteLength);
  private readonly bitmaps = new LruCache<number, Uint8Array>(BITMAP_CACHE_BYTES, (b) => b.length);

  constructor(
    readonly source: ByteSource,
    readonly size: number,
    private readonly dyn: DynHeader,
    /** Set on a differencing disk: absent sectors are the parent's rather than zeros. */
    readonly backing: BackingRef | undefined,
  ) {
    this.blockSize = dyn.blockSize;
    this.bitmapBytes = L.bitmapBytes(dyn.blockSize);
  }

  private batPage(page: number): Promise<DataView> {
    return this.batPages.getOrLoad(page, async () => {
      const first = page * BAT_PAGE_ENTRIES;
      const count = Math.min(BAT_PAGE_ENTRIES, this.dyn.maxTableEntries - first);
      return viewOf(await this.source.read(this.dyn.tableOffset + first * L.BAT_ENTRY_SIZE, count * L.BAT_ENTRY_SIZE));
    });
  }

  private async batEntry(block: number): Promise<number> {
    const page = await this.batPage(Math.floor(block / BAT_PAGE_ENTRIES));
    return page.getUint32((block % BAT_PAGE_ENTRIES) * L.BAT_ENTRY_SIZE);
  }

  /** The first allocated block in [from, to), or `to`. */
  private async nextAllocated(from: number, to: number): Promise<number> {
    let block = from;
    while (block < to) {
      const page = await this.batPage(Math.floor(block / BAT_PAGE_ENTRIES));
      const pageEnd = Math.min(to, (Math.floor(block / BAT_PAGE_ENTRIES) + 1) * BAT_PAGE_ENTRIES);
      for (; block < pageEnd; block++) {
        if (page.getUint32((block % BAT_PAGE_ENTRIES) * L.BAT_ENTRY_SIZE) !== L.BAT_UNUSED) return block;
      }
    }
    return to;
  }

  /**
   * Checks every BAT entry as qemu does at open: a block (bitmap and data)
   * must end inside the file, or the image has been truncated.
   */
  async checkBlocks(): Promise<void> {
    const span = this.bitmapBytes + this.blockSize;
    for (let block = 0; block < this.dyn.maxTableEntries; block += BAT_PAGE_ENTRIES) {
      const page = await this.batPage(block / BAT_PAGE_ENTRIES);
      for (let i = 0; i < page.byteLength / L.BAT_ENTRY_SIZE; i++) {
        const entry = page.getUint32(i * L.BAT_ENTRY_SIZE);
        if (entry === L.BAT_UNUSED || entry * L.SECTOR + span <= this.source.size) continue;
        throw new ImageFormatError(
          this.source.name,
          'VHD block allocation table',
          this.dyn.tableOffset + (block + i) * L.BAT_ENTRY_SIZE,
          `block ${block + i} at offset ${entry * L.SECTOR} (${span} bytes with its bitmap) ends past the end of the file ` +
            `(${this.source.size} bytes); the image has been truncated`,
        );
      }
    }
  }

  private bitmap(block: number, entry: number): Promise<Uint8Array> {
    return this.bitmaps.getOrLoad(block, () => this.source.read(entry * L.SECTOR, this.bitmapBytes));
  }

  async getMapping(offset: number, maxLength: number): Promise<Mapping> {
    if (offset >= this.size) return { kind: 'eof', offset, length: 0 };
    const end = Math.min(this.size, offset + maxLength);
    const block = Math.floor(offset / this.blockSize);
    const blockStart = block * this.blockSize;
    const entry = await this.batEntry(block);
    if (entry === L.BAT_UNUSED) {
      const stop = await this.nextAllocated(block + 1, Math.ceil(end / this.blockSize));
      return this.absent(offset, Math.min(end, stop * this.blockSize) - offset);
    }
    // Within an allocated block: the longest run of sectors that are all present, or all absent.
    const bitmap = await this.bitmap(block, entry);
    const runLimit = Math.min(end, blockStart + this.blockSize);
    const lastSector = Math.ceil((runLimit - blockStart) / L.SECTOR);
    const first = Math.floor((offset - blockStart) / L.SECTOR);
    const present = sectorPresent(bitmap, first);
    const uniform = present ? 0xff : 0x00;
    let next = first + 1;
    while (next < lastSector) {
      if ((next & 7) === 0 && next + 8 <= lastSector && bitmap[next >>> 3] === uniform) next += 8;
      else if (sectorPresent(bitmap, next) === present) next++;
      else break;
    }
    const length = Math.min(runLimit, blockStart + next * L.SECTOR) - offset;
    if (!present) return this.absent(offset, length);
    const hostOffset = entry * L.SECTOR + this.bitmapBytes + (offset - blockStart);
    return { kind: 'data', offset, length, source: this.source, hostOffset };
  }

  /** Sectors not in this file: the parent's in a differencing disk, zeros in a dynamic one. */
  private absent(offset: number, length: number): Mapping {
    return this.backing ? { kind: 'backing', offset, length } : { kind: 'zero', offset, length };
  }

  async decode(): Promise<void> {
    throw new Error('a VHD has no compressed units');
  }

  facts(): LayerFacts {
    return { clusterSize: this.blockSize, dirty: false };
  }

  snapshots() {
    return [];
  }

  atSnapshot(): Promise<Layer> {
    return noSnapshot(this.source);
  }
}

/**
 * The footer, as qemu looks for it: the copy at offset 0 (dynamic and
 * differencing disks) if it is there, else the end of the file, where only a
 * fixed disk may keep its sole footer.
 */
async function readFooter(source: ByteSource): Promise<{ footer: VhdFooter; at: number }> {
  const head = await source.read(0, L.FOOTER_SIZE);
  if (hasFooterCookie(head)) return { footer: parseFooter(head, source.name, 0), at: 0 };
  if (source.size < L.FOOTER_SIZE) throw new ImageFormatError(source.name, 'VHD footer', 0, 'invalid VPC image: the file is smaller than a footer');
  const at = source.size - L.FOOTER_SIZE;
  const tail = await source.read(at, L.FOOTER_SIZE);
  if (!hasFooterCookie(tail) || viewOf(tail).getUint32(L.F.diskType) !== L.TYPE_FIXED) {
    throw new ImageFormatError(source.name, 'VHD footer', at, 'invalid VPC image: no footer copy at offset 0 and no fixed-disk footer at the end');
  }
  return { footer: parseFooter(tail, source.name, at), at };
}

async function readDynHeader(source: ByteSource, footer: VhdFooter, footerAt: number): Promise<DynHeader> {
  const at = footer.dataOffset;
  if (at + L.DYN_HEADER_SIZE > source.size) {
    throw new ImageFormatError(source.name, 'VHD footer', footerAt + L.F.dataOffset, `dynamic disk header at offset ${at} lies past the end of the file`);
  }
  return parseDynHeader(await source.read(at, L.DYN_HEADER_SIZE), source.name, at);
}

/** Checks the table against the virtual size and the file, in qemu's order, before anything is read from it. */
function checkTable(source: ByteSource, dyn: DynHeader, headerAt: number, size: number): void {
  const fail = (offset: number, detail: string) => new ImageFormatError(source.name, 'VHD dynamic disk header', offset, detail);
  if (dyn.maxTableEntries * dyn.blockSize < size) {
    throw fail(headerAt + L.D.maxTableEntries, `Page table too small: ${dyn.maxTableEntries} blocks of ${dyn.blockSize} bytes do not cover ${size} bytes`);
  }
  if (dyn.maxTableEntries > L.MAX_TABLE_ENTRIES) {
    throw fail(headerAt + L.D.maxTableEntries, `Max Table Entries too large (${dyn.maxTableEntries})`);
  }
  const batEnd = dyn.tableOffset + dyn.maxTableEntries * L.BAT_ENTRY_SIZE;
  if (roundUp(batEnd, L.SECTOR) > source.size) {
    throw new ImageFormatError(
      source.name,
      'VHD block allocation table',
      dyn.tableOffset,
      `${dyn.maxTableEntries} entries end past the end of the file (${source.size} bytes); the image has been truncated`,
    );
  }
}

/** The parent a differencing disk names: its preferred locator's path, else its "Parent Unicode Name". */
async function parentName(source: ByteSource, dyn: DynHeader, headerAt: number): Promise<string> {
  const loc = preferredLocator(dyn);
  let name = '';
  if (loc) {
    const entryAt = headerAt + L.D.parentLocators + loc.index * L.LOCATOR_SIZE;
    if (loc.dataLength > L.MAX_LOCATOR_BYTES) {
      throw new ImageFormatError(source.name, 'VHD parent locator', entryAt, `locator of ${loc.dataLength} bytes is too long for a path`);
    }
    if (loc.dataOffset + loc.dataLength > source.size) {
      throw new ImageFormatError(source.name, 'VHD parent locator', entryAt, `locator data at offset ${loc.dataOffset} lies past the end of the file`);
    }
    name = decodeLocator(loc, await source.read(loc.dataOffset, loc.dataLength));
  }
  if (name === '') name = dyn.parentName;
  if (name === '') throw new ImageFormatError(source.name, 'VHD dynamic disk header', headerAt + L.D.parentName, 'differencing disk names no parent');
  return name;
}

async function open(source: ByteSource): Promise<Layer> {
  const { footer, at } = await readFooter(source);
  const size = virtualSectors(footer, source.name, at) * L.SECTOR;
  if (footer.diskType === L.TYPE_FIXED) return new FlatLayer('vpc', source, size);
  if (footer.diskType !== L.TYPE_DYNAMIC && footer.diskType !== L.TYPE_DIFFERENCING) {
    throw new ImageFormatError(source.name, 'VHD footer', at + L.F.diskType, `disk type ${footer.diskType} is not fixed (2), dynamic (3) or differencing (4)`);
  }
  const dyn = await readDynHeader(source, footer, at);
  checkTable(source, dyn, footer.dataOffset, size);
  const backing = footer.diskType === L.TYPE_DIFFERENCING ? { name: await parentName(source, dyn, footer.dataOffset), format: 'vpc' } : undefined;
  const layer = new SparseLayer(source, size, dyn, backing);
  await layer.checkBlocks();
  return layer;
}

export const vpcDriver: FormatDriver = {
  name: 'vpc',
  // qemu probes only the copy at offset 0: a fixed disk, footer at the end only, is probed as raw.
  probe: (head) => (hasFooterCookie(head) ? 100 : 0),
  open,
};
