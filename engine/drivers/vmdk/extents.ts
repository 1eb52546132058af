/**
 * The two kinds of VMDK extent and how each answers "where does this part of
 * the disk live": flat extents are raw bytes at an offset in their file;
 * sparse extents (KDMV hosted sparse, stream-optimized, COWD, seSparse) go
 * through a grain directory and grain tables, read on demand and kept in a
 * bounded cache shared by all the extents of an image. How the entries are
 * encoded is the one thing the sparse formats differ in (EntryCodec).
 */
import { ImageFormatError } from '../../errors.ts';
import type { LruCache } from '../../cache.ts';
import type { ByteSource } from '../../io/source.ts';
import type { CompressedUnit, InfoValue, Mapping } from '../../driver.ts';
import { CodecError, inflateZlibInto } from '../../codecs/deflate.ts';
import { viewOf } from '../common.ts';
import { grainMarkerSize, type SparseGeometry } from './header.ts';
import * as L from './layout.ts';

/** Grain directory entries are read in pages of this many, so a huge directory is never read whole. */
const GD_PAGE_ENTRIES = 4096;
/** The first read of a compressed grain with a marker; more is read only for grains that compress worse. */
const FIRST_GRAIN_READ = 16 * 1024;

export type TableCache = LruCache<string, DataView>;

interface ExtentBase {
  /** The extent file, as the opener named it. */
  readonly source: ByteSource;
  /** Guest offset of the extent's first byte. */
  readonly start: number;
  /** Bytes. */
  readonly length: number;
  /** The extent line's type (FLAT, SPARSE …); empty for the extent of a sparse file opened directly, as qemu reports it. */
  type: string;
}

export class FlatExtent implements ExtentBase {
  type: string;
  constructor(
    readonly source: ByteSource,
    readonly start: number,
    readonly length: number,
    readonly flatOffset: number,
    type: string,
  ) {
    this.type = type;
  }

  /**
   * Data at the extent's offset in its file. Past the end of a short file
   * the bytes read as zeros; qemu-img map says "data" and "zero" there,
   * which a mapping cannot say both of, so they map as zeros at that place.
   */
  mapping(rel: number, len: number): Mapping {
    const offset = this.start + rel;
    const hostOffset = this.flatOffset + rel;
    const inFile = this.source.size - hostOffset;
    if (inFile <= 0) return { kind: 'zero', offset, length: len, host: { source: this.source, hostOffset } };
    return { kind: 'data', offset, length: Math.min(len, inFile), source: this.source, hostOffset };
  }

  info(): { [key: string]: InfoValue } {
    return { filename: this.source.name, format: this.type, 'virtual-size': this.length };
  }
}

/** What a grain table entry can say besides "the grain is at this offset". */
export const UNALLOCATED = -1;
export const ZEROED = -2;
export const INVALID = -3;

/**
 * How a sparse format encodes its grain directory and grain table entries:
 * hosted sparse and COWD extents use sector numbers in u32s, seSparse
 * extents tagged u64s.
 */
export interface EntryCodec {
  readonly entryBytes: 4 | 8;
  /** The grain table's offset in bytes from the directory entry at `at`; 0 when there is none, INVALID when malformed. */
  table(gd: DataView, at: number): number;
  /** The grain's offset in bytes from the table entry at `at`, or UNALLOCATED, ZEROED, INVALID. */
  grain(gt: DataView, at: number): number;
}

/** "Grain Table and Grain Directory": u32 sector numbers; GTE 1 is a zeroed grain when the header says zeroed grains are in use. */
export function hostedEntries(zeroedGrain: boolean): EntryCodec {
  return {
    entryBytes: 4,
    table: (gd, at) => gd.getUint32(at, true) * L.SECTOR,
    grain(gt, at) {
      const v = gt.getUint32(at, true);
      if (v === 0) return UNALLOCATED;
      return v === L.GTE_ZEROED && zeroedGrain ? ZEROED : v * L.SECTOR;
    },
  };
}

/** What one grain table entry says about a grain. */
const enum Grain {
  Unallocated,
  Zeroed,
  Allocated,
}

export class SparseExtent implements ExtentBase {
  type: string;
  readonly length: number;
  private readonly gtSpan: number;

  constructor(
    readonly source: ByteSource,
    readonly start: number,
    readonly geometry: SparseGeometry,
    private readonly codec: EntryCodec,
    readonly flags: { compressed: boolean; markers: boolean },
    private readonly cache: TableCache,
    /** Distinguishes this extent's tables in the shared cache. */
    private readonly id: number,
    type: string,
  ) {
    this.type = type;
    this.length = geometry.capacity * L.SECTOR;
    this.gtSpan = geometry.gtEntries * geometry.grainBytes;
    const gdBytes = geometry.gdEntries * codec.entryBytes;
    if (geometry.gdOffset + gdBytes > source.size) {
      throw new ImageFormatError(
        source.name,
        'grain directory',
        geometry.gdOffset,
        `grain directory of ${gdBytes} bytes lies past the end of the file (${source.size} bytes)`,
      );
    }
  }

  get grainBytes(): number {
    return this.geometry.grainBytes;
  }

  /** The grain table offset (bytes) of directory entry `index`; 0 when the table is not allocated. */
  private async gdEntry(index: number): Promise<number> {
    const page = Math.floor(index / GD_PAGE_ENTRIES);
    const g = this.geometry;
    const size = this.codec.entryBytes;
    const table = await this.cache.getOrLoad(`${this.id}:gd:${page}`, async () => {
      const entries = Math.min(GD_PAGE_ENTRIES, g.gdEntries - page * GD_PAGE_ENTRIES);
      return viewOf(await this.source.read(g.gdOffset + page * GD_PAGE_ENTRIES * size, entries * size));
    });
    const offset = this.codec.table(table, (index % GD_PAGE_ENTRIES) * size);
    if (offset === INVALID) {
      throw new ImageFormatError(this.source.name, 'grain directory', g.gdOffset + index * size, `invalid grain directory entry ${index}`);
    }
    return offset;
  }

  private gt(offset: number, gdIndex: number): Promise<DataView> {
    const bytes = this.geometry.gtEntries * this.codec.entryBytes;
    return this.cache.getOrLoad(`${this.id}:gt:${offset}`, async () => {
      if (offset + bytes > this.source.size) {
        throw new ImageFormatError(
          this.source.name,
          'grain table',
          offset,
          `grain table of grain directory entry ${gdIndex} lies past the end of the file (${this.source.size} bytes)`,
        );
      }
      return viewOf(await this.source.read(offset, bytes));
    });
  }

  /**
   * The longest uniform run from `rel` (bytes into the extent), at most `len`
   * bytes: unallocated grains (the backing file answers), zeroed grains,
   * grains stored contiguously, or one compressed grain.
   */
  async mapping(rel: number, len: number): Promise<Mapping> {
    const end = rel + len;
    const grain = this.grainBytes;
    let pos = rel;
    let first: Grain | undefined;
    let host = 0;
    let next = 0;
    while (pos < end) {
      const gdIndex = Math.floor(pos / this.gtSpan);
      const gtOffset = await this.gdEntry(gdIndex);
      const gtEnd = Math.min(end, (gdIndex + 1) * this.gtSpan);
      if (gtOffset === 0) {
        if (first !== undefined && first !== Grain.Unallocated) break;
        first = Grain.Unallocated;
        pos = gtEnd;
        continue;
      }
      const gt = await this.gt(gtOffset, gdIndex);
      for (; pos < gtEnd; pos = pos - (pos % grain) + grain) {
        const index = Math.floor((pos % this.gtSpan) / grain);
        const at = index * this.codec.entryBytes;
        const grainHost = this.codec.grain(gt, at);
        const kind = grainHost === UNALLOCATED ? Grain.Unallocated : grainHost === ZEROED ? Grain.Zeroed : Grain.Allocated;
        if (kind === Grain.Allocated) {
          if (grainHost === INVALID) throw new ImageFormatError(this.source.name, 'grain table', gtOffset + at, `invalid grain table entry ${index}`);
          if (grainHost >= this.source.size) {
            throw new ImageFormatError(
              this.source.name,
              'grain table',
              gtOffset + at,
              `grain at offset ${grainHost} lies past the end of the file (${this.source.size} bytes)`,
            );
          }
          if (this.flags.compressed) {
            if (first === undefined) return this.compressed(rel, Math.min(end, pos - (pos % grain) + grain) - rel, grainHost);
            return this.finish(first, rel, pos, host);
          }
          if (first === undefined) {
            first = kind;
            host = grainHost + (pos % grain);
            next = grainHost + grain;
            continue;
          }
          if (first !== kind || grainHost !== next) return this.finish(first, rel, pos, host);
          next += grain;
          continue;
        }
        if (first === undefined) first = kind;
        else if (first !== kind) return this.finish(first, rel, pos, host);
      }
    }
    return this.finish(first ?? Grain.Unallocated, rel, Math.min(pos, end), host);
  }

  private finish(kind: Grain, rel: number, stop: number, host: number): Mapping {
    const offset = this.start + rel;
    const length = stop - rel;
    if (kind === Grain.Unallocated) return { kind: 'backing', offset, length };
    if (kind === Grain.Zeroed) return { kind: 'zero', offset, length };
    return { kind: 'data', offset, length, source: this.source, hostOffset: host };
  }

  /** One compressed grain; the unit holds the grain's bytes up to the extent's end (qemu compresses a short last grain). */
  private compressed(rel: number, length: number, grainHost: number): Mapping {
    const grainStart = rel - (rel % this.grainBytes);
    const unit: CompressedUnit = {
      guestOffset: this.start + grainStart,
      size: Math.min(this.grainBytes, this.length - grainStart),
      source: this.source,
      hostOffset: grainHost,
      // qemu reads at most two grains of marker and compressed data.
      hostLength: Math.min(2 * this.grainBytes, this.source.size - grainHost),
    };
    return { kind: 'compressed', offset: this.start + rel, length, unit };
  }

  /** Inflates a compressed grain: after its marker when the extent has markers, else from the grain offset. */
  async decode(unit: CompressedUnit, out: Uint8Array): Promise<void> {
    const fail = (detail: string) => new ImageFormatError(this.source.name, 'compressed grain', unit.hostOffset, detail);
    let input: Uint8Array;
    if (this.flags.markers) {
      // Most grains compress well: one small read usually holds the marker and all the data.
      const first = await this.source.read(unit.hostOffset, Math.min(unit.hostLength, FIRST_GRAIN_READ));
      if (first.length < L.GRAIN_MARKER_BYTES) throw fail('grain marker lies past the end of the file');
      const size = grainMarkerSize(first);
      if (size === 0 || size > 2 * this.grainBytes) throw fail(`grain marker gives an invalid compressed size of ${size} bytes`);
      const end = Math.min(unit.hostLength, L.GRAIN_MARKER_BYTES + size);
      input = end <= first.length ? first.subarray(L.GRAIN_MARKER_BYTES, end) : await this.source.read(unit.hostOffset + L.GRAIN_MARKER_BYTES, end - L.GRAIN_MARKER_BYTES);
    } else {
      input = await this.source.read(unit.hostOffset, unit.hostLength);
    }
    try {
      inflateZlibInto(input, out);
    } catch (e) {
      if (e instanceof CodecError) throw fail(e.message);
      throw e;
    }
  }

  info(): { [key: string]: InfoValue } {
    const out: { [key: string]: InfoValue } = {
      filename: this.source.name,
      format: this.type,
      'virtual-size': this.length,
      'cluster-size': this.grainBytes,
    };
    if (this.flags.compressed) out['compressed'] = true;
    return out;
  }
}

export type Extent = FlatExtent | SparseExtent;
