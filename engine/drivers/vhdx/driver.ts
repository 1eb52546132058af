/**
 * The VHDX driver: fixed, dynamic and differencing files, any block size and
 * logical sector size the spec allows, and logs that need replaying (replayed
 * in memory, see replay.ts). Mappings come from the BAT: present blocks are
 * data at their place in the file, zero blocks read as zeros, absent blocks
 * fall through to the parent (or read as zeros without one), and partially
 * present blocks of a differencing file follow their sector bitmap.
 *
 * qemu-img 7.2 reports a whole VHDX as data (its driver has no block status);
 * this driver reports the true allocation instead, so `map` differs from
 * qemu-img's on purpose.
 */
import { ImageFormatError, VDiskError } from '../../errors.ts';
import { LruCache } from '../../cache.ts';
import type { ByteSource } from '../../io/source.ts';
import type { CheckResult, FormatDriver, Layer, LayerFacts, Mapping, OpenContext } from '../../driver.ts';
import { noSnapshot } from '../common.ts';
import { Bat, bitmapIndex, geometry, offsetAt, payloadIndex, stateAt, type Geometry } from './bat.ts';
import {
  checkHeader,
  checkRegionTable,
  currentHeader,
  hasFileSignature,
  itemName,
  parentPath,
  parseFileParameters,
  parseMetadataTable,
  parseParentLocator,
  parseRegionTable,
  parseSectorSize,
  parseVirtualDiskSize,
  ZERO_GUID,
  type MetadataItems,
  type Region,
  type RegionTable,
  type VhdxHeader,
} from './header.ts';
import { replayLog } from './replay.ts';
import { checkVhdx } from './check.ts';
import * as L from './layout.ts';

/** Sector bitmaps of partially present blocks kept (up to 64 KiB each). */
const BITMAP_CACHE_BYTES = 4 * 1024 * 1024;

/** Entries a checked BAT may have beyond what the file holds (they read as zeros). */
const CHECK_SLACK = 2 ** 26;

/**
 * qemu cannot open a file whose log needs replaying read-only, as `check`
 * opens it; its words, hint included, are kept since they say how to repair
 * the file (vdisk never writes its input).
 */
class LogNeedsReplayError extends VDiskError {
  constructor(file: string) {
    const hint = `To replay the log, run:\nqemu-img check -r all '${file}'`;
    super(file, `VHDX image file '${file}' opened read-only, but contains a log that needs to be replayed\n${hint}`);
  }
}

/** What a run of guest bytes is in this file. */
type Piece = { kind: 'data'; host: number; end: number } | { kind: 'zero' | 'backing'; end: number };

class VhdxLayer implements Layer {
  readonly format = 'vhdx';
  readonly size: number;
  private readonly bitmaps = new LruCache<number, Uint8Array>(BITMAP_CACHE_BYTES, (b) => b.length);

  constructor(
    /** The file as named, for info. */
    readonly source: ByteSource,
    /** The file as it reads, after a log replay if there was one. */
    private readonly src: ByteSource,
    private readonly bat: Bat,
    private readonly g: Geometry,
    readonly backing: { name: string; format: string } | undefined,
    private readonly logReplayed: boolean,
    /** The regions qemu registers, in the order its check searches them. */
    private readonly regions: Region[],
  ) {
    this.size = g.size;
  }

  async getMapping(offset: number, maxLength: number): Promise<Mapping> {
    if (offset >= this.size) return { kind: 'eof', offset, length: 0 };
    const g = this.g;
    const end = Math.min(this.size, offset + maxLength);
    let block = Math.floor(offset / g.blockSize);
    const { page, first: pageFirst } = await this.bat.pageOf(payloadIndex(g, block));
    const slot = payloadIndex(g, block) - pageFirst;
    const state = stateAt(page, slot);
    const blockStart = block * g.blockSize;
    const kind = this.kindOf(state, block);
    const first: Piece =
      kind === 'partial'
        ? await this.partial(offset, block, offsetAt(page, slot))
        : kind === 'data'
          ? { kind, host: offsetAt(page, slot) + (offset - blockStart), end: blockStart + g.blockSize }
          : { kind, end: blockStart + g.blockSize };
    let pos = Math.min(end, first.end);
    // Whole blocks that continue the run, as far as this BAT page goes; no allocation per block.
    const pageEnd = pageFirst + page.byteLength / L.BAT_ENTRY_SIZE;
    while (pos < end && pos % g.blockSize === 0) {
      block = pos / g.blockSize;
      const index = payloadIndex(g, block);
      if (index >= pageEnd) break;
      const next = this.kindOf(stateAt(page, index - pageFirst), block);
      if (next !== first.kind) break;
      if (first.kind === 'data' && offsetAt(page, index - pageFirst) !== first.host + (pos - offset)) break;
      pos = Math.min(end, pos + g.blockSize);
    }
    const length = pos - offset;
    if (first.kind === 'data') return { kind: 'data', offset, length, source: this.src, hostOffset: first.host };
    return { kind: first.kind, offset, length };
  }

  /** 2.5.1.1: what a block in `state` is. */
  private kindOf(state: number, block: number): 'data' | 'zero' | 'backing' | 'partial' {
    switch (state) {
      case L.PAYLOAD_BLOCK_FULLY_PRESENT:
        return 'data';
      case L.PAYLOAD_BLOCK_NOT_PRESENT:
        // Not in this file: the parent's contents in a differencing file, else unallocated (zeros).
        return 'backing';
      case L.PAYLOAD_BLOCK_ZERO:
      case L.PAYLOAD_BLOCK_UNDEFINED:
      case L.PAYLOAD_BLOCK_UNMAPPED:
      case L.PAYLOAD_BLOCK_UNMAPPED_V095:
        // Contents zero or undefined, in every kind of file: zeros are what the spec allows and qemu returns.
        return 'zero';
      case L.PAYLOAD_BLOCK_PARTIALLY_PRESENT:
        if (this.g.hasParent) return 'partial';
        throw this.badEntry(block, state, 'a partially present block in a file without a parent');
      default:
        throw this.badEntry(block, state, `unknown block state ${state}`);
    }
  }

  /** 2.5.1.1 PAYLOAD_BLOCK_PARTIALLY_PRESENT: sectors whose bit is set are here, the others are the parent's. */
  private async partial(offset: number, block: number, blockOffset: number): Promise<Piece> {
    const g = this.g;
    const bits = await this.sectorBitmap(block);
    const blockStart = block * g.blockSize;
    const sectors = Math.ceil((Math.min(this.size, blockStart + g.blockSize) - blockStart) / g.logicalSectorSize);
    const s = Math.floor((offset - blockStart) / g.logicalSectorSize);
    const bit = (k: number) => (bits[k >> 3]! >> (k & 7)) & 1;
    const set = bit(s);
    let k = s + 1;
    while (k < sectors && bit(k) === set) k++;
    const end = Math.min(this.size, blockStart + k * g.logicalSectorSize);
    return set ? { kind: 'data', host: blockOffset + (offset - blockStart), end } : { kind: 'backing', end };
  }

  /** The bits of `block`'s sectors in the sector bitmap block of its chunk (bit 0 of byte 0 is the first sector). */
  private sectorBitmap(block: number): Promise<Uint8Array> {
    return this.bitmaps.getOrLoad(block, async () => {
      const g = this.g;
      const chunk = Math.floor(block / g.chunkRatio);
      const index = bitmapIndex(g, chunk);
      const sb = await this.bat.entry(index);
      if (sb.state !== L.SB_BLOCK_PRESENT) {
        throw new ImageFormatError(this.source.name, 'BAT', this.bat.region.fileOffset + index * L.BAT_ENTRY_SIZE,
          `block ${block} is partially present but the sector bitmap block of its chunk is not (state ${sb.state})`);
      }
      const bytesPerBlock = g.blockSize / g.logicalSectorSize / 8;
      return this.src.read(sb.offset + (block % g.chunkRatio) * bytesPerBlock, bytesPerBlock);
    });
  }

  private badEntry(block: number, state: number, detail: string): ImageFormatError {
    const at = this.bat.region.fileOffset + payloadIndex(this.g, block) * L.BAT_ENTRY_SIZE;
    return new ImageFormatError(this.source.name, 'BAT', at, `entry for block ${block} (state ${state}): ${detail}`);
  }

  async decode(): Promise<void> {
    throw new Error('vhdx has no compressed units');
  }

  facts(): LayerFacts {
    // qemu 7.2 reports no format-specific data for vhdx; a replayed log (which qemu-img refuses) is worth saying.
    return {
      clusterSize: this.g.blockSize,
      dirty: false,
      formatSpecific: this.logReplayed ? { type: 'vhdx', data: { 'log-replayed': true } } : undefined,
    };
  }

  snapshots() {
    return [];
  }

  atSnapshot(): Promise<Layer> {
    return noSnapshot(this.source);
  }

  /** qemu-img check's findings, on the image as qemu reads it (see `open`). */
  check(signal?: AbortSignal): Promise<CheckResult> {
    return checkVhdx({ file: this.source.name, fileSize: this.src.size, bat: this.bat, regions: this.regions }, signal);
  }
}

async function readHeader(source: ByteSource): Promise<VhdxHeader> {
  const [a, b] = await Promise.all(L.HEADER_OFFSETS.map((o) => source.read(o, L.HEADER_SIZE)));
  const header = currentHeader(checkHeader(a!, 0), checkHeader(b!, 1), source.name);
  // qemu checks where the log is even when it is empty.
  const fail = (at: number, detail: string) => new ImageFormatError(source.name, 'VHDX header', header.fileOffset + at, detail);
  if (header.logOffset < L.LOG_ALIGNMENT || header.logOffset % L.LOG_ALIGNMENT !== 0) {
    throw fail(L.H.logOffset, `log offset ${header.logOffset} is not a non-zero multiple of 1 MiB`);
  }
  if (header.logVersion !== L.LOG_VERSION) throw fail(L.H.logVersion, `unsupported log version ${header.logVersion}`);
  return header;
}

/** 2.2.3: the first region table whose checksum holds; the second copy stands in for a damaged first. */
async function readRegionTable(src: ByteSource): Promise<RegionTable> {
  const why: string[] = [];
  for (const offset of L.REGION_TABLE_OFFSETS) {
    const bytes = await src.read(offset, L.REGION_TABLE_SIZE);
    const bad = checkRegionTable(bytes);
    if (bad === undefined) return parseRegionTable(bytes, src.name, offset);
    why.push(bad);
  }
  throw new ImageFormatError(src.name, 'region table', L.REGION_TABLE_OFFSETS[0], `no valid region table (first: ${why[0]}; copy: ${why[1]})`);
}

/** Regions must not overlap each other or the log, and the parts read must lie in the file. */
function checkRegions(src: ByteSource, rt: RegionTable, log: Region): void {
  const fail = (detail: string) => new ImageFormatError(src.name, 'region table', L.REGION_TABLE_OFFSETS[0], detail);
  const named: [string, Region][] = [['BAT', rt.bat], ['metadata', rt.metadata], ['log', log]];
  for (let i = 0; i < named.length; i++) {
    for (let j = i + 1; j < named.length; j++) {
      const [an, a] = named[i]!;
      const [bn, b] = named[j]!;
      if (a.length > 0 && b.length > 0 && a.fileOffset < b.fileOffset + b.length && b.fileOffset < a.fileOffset + a.length) {
        throw fail(`the ${an} region (${a.length} bytes at ${a.fileOffset}) overlaps the ${bn} region (${b.length} bytes at ${b.fileOffset})`);
      }
    }
  }
  if (rt.metadata.length < L.METADATA_TABLE_SIZE || rt.metadata.fileOffset + L.METADATA_TABLE_SIZE > src.size) {
    throw fail(`the metadata region (${rt.metadata.length} bytes at ${rt.metadata.fileOffset}) lies past the end of the file (${src.size} bytes) or is too short`);
  }
}

/** Reads metadata item `guid` of the region at `region`, at least `min` bytes of it. */
async function readItem(src: ByteSource, region: Region, items: MetadataItems, guid: string, min: number): Promise<{ bytes: Uint8Array; at: number }> {
  const item = items.get(guid)!;
  const at = region.fileOffset + item.fileOffset;
  if (item.length < min) throw new ImageFormatError(src.name, 'metadata table', region.fileOffset, `${itemName(guid)} item is ${item.length} bytes, shorter than ${min}`);
  if (at + item.length > src.size) {
    throw new ImageFormatError(src.name, itemName(guid), at, `item (${item.length} bytes) lies past the end of the file`);
  }
  return { bytes: await src.read(at, item.length), at };
}

async function open(source: ByteSource, ctx: OpenContext): Promise<Layer> {
  const name = source.name;
  const ident = await source.read(0, L.FILE_SIGNATURE.length);
  if (!hasFileSignature(ident)) throw new ImageFormatError(name, 'file identifier', 0, 'Image is not in vhdx format');

  const header = await readHeader(source);
  const logRegion = { fileOffset: header.logOffset, length: header.logLength };
  const replayed = header.logGuid !== ZERO_GUID && header.logLength !== 0 ? await replayLog(source, header) : undefined;
  if (replayed && ctx.forCheck) throw new LogNeedsReplayError(name);
  const src: ByteSource = replayed ?? source;

  const rt = await readRegionTable(src);
  checkRegions(src, rt, logRegion);
  const md = rt.metadata;
  const items = parseMetadataTable(await src.read(md.fileOffset, L.METADATA_TABLE_SIZE), name, md.fileOffset, md.length);

  const fp = await readItem(src, md, items, L.FILE_PARAMETERS_GUID, L.FILE_PARAMETERS_SIZE);
  const params = parseFileParameters(fp.bytes, name, fp.at);
  const vs = await readItem(src, md, items, L.VIRTUAL_DISK_SIZE_GUID, 8);
  const virtualSize = parseVirtualDiskSize(vs.bytes, name, vs.at);
  const ls = await readItem(src, md, items, L.LOGICAL_SECTOR_SIZE_GUID, 4);
  const logical = parseSectorSize(ls.bytes, name, ls.at, 'logical sector size');
  const ps = await readItem(src, md, items, L.PHYSICAL_SECTOR_SIZE_GUID, 4);
  parseSectorSize(ps.bytes, name, ps.at, 'physical sector size');
  // 2.6.2.3: required (qemu insists on it too), though reading the disk does not need its value.
  await readItem(src, md, items, L.PAGE83_DATA_GUID, L.PAGE83_DATA_SIZE);

  let backing: { name: string; format: string } | undefined;
  if (params.hasParent) {
    if (!items.has(L.PARENT_LOCATOR_GUID)) throw new ImageFormatError(name, 'metadata table', md.fileOffset, 'a differencing file without a parent locator');
    const pl = await readItem(src, md, items, L.PARENT_LOCATOR_GUID, 0);
    backing = { name: parentPath(parseParentLocator(pl.bytes, name, pl.at), name, pl.at), format: 'vhdx' };
  }

  // 2.6.2.2: the size is a whole number of logical sectors.
  const size = Math.floor(virtualSize / logical) * logical;
  const g = geometry(size, params.blockSize, logical, params.hasParent);
  const batBytes = g.entries * L.BAT_ENTRY_SIZE;
  if (batBytes > rt.bat.length) {
    throw new ImageFormatError(name, 'region table', L.REGION_TABLE_OFFSETS[0], `the BAT region (${rt.bat.length} bytes) is too small for ${g.entries} entries`);
  }
  // Opened for a check, the file reads as qemu reads it (zeros past the end),
  // unless the BAT is so long that walking it would take time no file bounds.
  if (ctx.forCheck ? g.entries > src.size / L.BAT_ENTRY_SIZE + CHECK_SLACK : rt.bat.fileOffset + batBytes > src.size) {
    throw new ImageFormatError(name, 'region table', L.REGION_TABLE_OFFSETS[0], `the BAT (${batBytes} bytes at ${rt.bat.fileOffset}) lies past the end of the file (${src.size} bytes)`);
  }
  const bat = new Bat(src, rt.bat, g);
  // qemu tests the blocks as it opens a file, except to check it: the check reports what it finds.
  if (!ctx.forCheck) await bat.check(src.size, [{ fileOffset: 0, length: L.HEADER_SECTION_SIZE }, logRegion, rt.bat, md]);
  // qemu registers the log, then the region table's entries, and searches the newest first.
  const regions = [logRegion, ...rt.entries].reverse();
  return new VhdxLayer(source, src, bat, g, backing, replayed !== undefined, regions);
}

export const vhdxDriver: FormatDriver = {
  name: 'vhdx',
  probe: (head) => (hasFileSignature(head) ? 100 : 0),
  open,
};
