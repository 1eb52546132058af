/**
 * The qcow2 driver: v2 and v3, cluster sizes 512 B – 2 MiB, standard and
 * extended (subcluster) L2 entries, zero and compressed clusters (zlib and
 * zstd), external data files, internal snapshots and backing files. It
 * answers mappings from the L1/L2 tables; refcounts are not needed to read and
 * are left to `check`.
 */
import { ImageFormatError, SnapshotNotFoundError } from '../../errors.ts';
import { LruCache } from '../../cache.ts';
import type { ByteSource } from '../../io/source.ts';
import type {
  CompressedUnit,
  FormatDriver,
  Layer,
  LayerFacts,
  Mapping,
  OpenContext,
  SnapshotInfo,
  SnapshotSelector,
  InfoValue,
  CheckResult,
} from '../../driver.ts';
import { CodecError, inflateRawInto } from '../../codecs/deflate.ts';
import { zstdDecodeInto } from '../../codecs/zstd.ts';
import { viewOf } from '../common.ts';
import { checkQcow2 } from './check.ts';
import { parseBackingName, parseHeader, parseSnapshotEntry, type Qcow2Header, type RawSnapshot } from './header.ts';
import * as L from './layout.ts';

/** Budget for cached L2 tables per image; a 2 MiB-cluster L2 table is 2 MiB. */
const L2_CACHE_BYTES = 32 * 1024 * 1024;
/** qemu's limit on the whole snapshot table (QCOW_MAX_SNAPSHOTS_SIZE is 64 MiB). */
const MAX_SNAPSHOT_TABLE_BYTES = 64 * 1024 * 1024;
const SNAPSHOT_READ_CHUNK = 64 * 1024;

/** What one (sub)cluster is; qemu's QCow2SubclusterType. */
const enum Unit {
  Normal,
  ZeroPlain,
  ZeroAlloc,
  UnallocPlain,
  UnallocAlloc,
  Compressed,
}

const hex = (n: number) => '0x' + n.toString(16);

/** A structure of the image file that tables and data clusters must never point into. */
interface Region {
  name: string;
  start: number;
  end: number;
}

/** The fixed metadata of the file: its header cluster, the active L1 table, the refcount table. */
function fixedRegions(h: Qcow2Header): Region[] {
  const cs = 2 ** h.clusterBits;
  const regions = [
    { name: 'header', start: 0, end: cs },
    { name: 'active L1 table', start: h.l1TableOffset, end: h.l1TableOffset + h.l1Size * 8 },
    { name: 'refcount table', start: h.refcountTableOffset, end: h.refcountTableOffset + h.refcountTableClusters * cs },
  ];
  return regions.filter((r) => r.end > r.start);
}

const overlap = (r: Region, start: number, end: number) => start < r.end && r.start < end;

/** State shared by an image and the snapshot views opened from it. */
class Qcow2File {
  readonly clusterSize: number;
  readonly extL2: boolean;
  readonly entryBytes: number;
  readonly l2Entries: number;
  readonly unitSize: number;
  readonly l2Cache = new LruCache<number, DataView>(L2_CACHE_BYTES, (v) => v.byteLength);
  /** What L2 tables and data clusters in this file may not overlap (qemu reads them anyway, aliasing metadata as guest data). */
  readonly regions: Region[];

  constructor(
    readonly source: ByteSource,
    readonly dataSource: ByteSource,
    readonly header: Qcow2Header,
    readonly snapshotTable: RawSnapshot[],
  ) {
    this.clusterSize = 2 ** header.clusterBits;
    this.extL2 = (header.incompatible & L.INCOMPAT_EXTL2) !== 0;
    this.entryBytes = this.extL2 ? 16 : 8;
    this.l2Entries = this.clusterSize / this.entryBytes;
    this.unitSize = this.extL2 ? this.clusterSize / L.SUBCLUSTERS_PER_CLUSTER : this.clusterSize;
    this.regions = fixedRegions(header);
  }

  /** The metadata structure [start, end) of the image file overlaps, if any. */
  aliased(start: number, end: number): string | undefined {
    return this.regions.find((r) => overlap(r, start, end))?.name;
  }

  get hasDataFile(): boolean {
    return (this.header.incompatible & L.INCOMPAT_DATA_FILE) !== 0;
  }

  fail(structure: string, offset: number | undefined, detail: string): ImageFormatError {
    return new ImageFormatError(this.source.name, structure, offset, detail);
  }

  /** Checks a table's place in the file before anything is allocated for it; `pastEnd` allows what lies past the end. */
  checkTable(name: string, offset: number, bytes: number, maxBytes: number, pastEnd = false): void {
    if (bytes > maxBytes) throw this.fail(name, offset, `${name} too large`);
    if (offset % this.clusterSize !== 0) throw this.fail(name, offset, `${name} offset invalid (not cluster aligned)`);
    if (pastEnd ? offset + bytes > L.MAX_REQUEST_END : offset + bytes > this.source.size) {
      throw this.fail(name, offset, `${name} of ${bytes} bytes lies past the end of the file (${this.source.size} bytes)`);
    }
  }

  /**
   * Reads an L1 table. `pastEndReadsZero` is for an image opened to be
   * checked: qemu opens it even when the table lies past the end of the file,
   * reading zeros there, and its check reports the damage.
   */
  async readL1(name: string, offset: number, entries: number, pastEndReadsZero = false): Promise<DataView> {
    const bytes = entries * 8;
    if (entries === 0) return new DataView(new ArrayBuffer(0));
    this.checkTable(name, offset, bytes, L.MAX_L1_BYTES, pastEndReadsZero);
    if (offset >= this.source.size) return new DataView(new ArrayBuffer(bytes));
    return viewOf(await this.source.read(offset, bytes));
  }

  l2Table(offset: number, l1Index: number): Promise<DataView> {
    return this.l2Cache.getOrLoad(offset, async () => {
      if (offset % this.clusterSize !== 0) {
        throw this.fail('L1 table', undefined, `L2 table offset ${hex(offset)} unaligned (L1 index: ${hex(l1Index)})`);
      }
      if (offset + this.clusterSize > this.source.size) {
        throw this.fail('L2 table', offset, `L2 table (L1 index ${hex(l1Index)}) lies past the end of the file`);
      }
      const alias = this.aliased(offset, offset + this.clusterSize);
      if (alias) throw this.fail('L2 table', offset, `L2 table (L1 index ${hex(l1Index)}) overlaps the ${alias}`);
      return viewOf(await this.source.read(offset, this.clusterSize));
    });
  }
}

class Qcow2Layer implements Layer {
  readonly format = 'qcow2';
  readonly source: ByteSource;
  readonly size: number;
  readonly backing;

  constructor(
    private readonly f: Qcow2File,
    private readonly l1: DataView,
    backingName: string | undefined,
  ) {
    this.source = f.source;
    // qemu keeps the size in whole sectors.
    this.size = Math.floor(f.header.size / 512) * 512;
    this.backing = backingName === undefined ? undefined : { name: backingName, format: f.header.backingFormat };
  }

  async getMapping(offset: number, maxLength: number): Promise<Mapping> {
    if (offset >= this.size) return { kind: 'eof', offset, length: 0 };
    const f = this.f;
    const end = Math.min(this.size, offset + maxLength);
    const span = f.clusterSize * f.l2Entries;
    const l1Index = Math.floor(offset / span);
    const l2Offset = this.l2OffsetAt(l1Index);
    if (l2Offset === 0) {
      // Unallocated L2 tables: one answer for as many of them as are in a row.
      let stop = (l1Index + 1) * span;
      while (stop < end && this.l2OffsetAt(stop / span) === 0) stop += span;
      return { kind: 'backing', offset, length: Math.min(end, stop) - offset };
    }
    const l2 = await f.l2Table(l2Offset, l1Index);
    return this.run(l2, l2Offset, offset, Math.min(end, (l1Index + 1) * span), span);
  }

  private l2OffsetAt(l1Index: number): number {
    if (l1Index * 8 >= this.l1.byteLength) return 0;
    const hi = this.l1.getUint32(l1Index * 8) & L.OFFSET_MASK_HI;
    const lo = (this.l1.getUint32(l1Index * 8 + 4) & L.OFFSET_MASK_LO) >>> 0;
    return hi * 0x1_0000_0000 + lo;
  }

  /** The longest uniform run starting at `offset` inside one L2 table, ending by `end`. */
  private run(l2: DataView, l2Offset: number, offset: number, end: number, span: number): Mapping {
    const f = this.f;
    const unit = f.unitSize;
    const base = offset - (offset % span);
    let pos = offset - (offset % unit);
    const first = this.classify(l2, l2Offset, (pos - base) / unit);
    if (first.type === Unit.Compressed) {
      const clusterStart = offset - (offset % f.clusterSize);
      const length = Math.min(end, clusterStart + f.clusterSize) - offset;
      return { kind: 'compressed', offset, length, unit: this.compressedUnit(first.hi, first.lo, clusterStart, l2Offset) };
    }
    const hasHost = first.type === Unit.Normal || first.type === Unit.ZeroAlloc;
    const isBacking = first.type === Unit.UnallocPlain || first.type === Unit.UnallocAlloc;
    let expectHost = first.host + unit;
    for (pos += unit; pos < end; pos += unit) {
      const next = this.classify(l2, l2Offset, (pos - base) / unit);
      if (isBacking) {
        if (next.type !== Unit.UnallocPlain && next.type !== Unit.UnallocAlloc) break;
      } else if (next.type !== first.type || (hasHost && next.host !== expectHost)) {
        break;
      }
      expectHost += unit;
    }
    const length = Math.min(pos, end) - offset;
    const hostOffset = first.host + (offset % unit);
    switch (first.type) {
      case Unit.Normal:
        if (hostOffset >= f.dataSource.size) {
          throw f.fail('L2 table', l2Offset, `data cluster at ${hex(first.host)} lies past the end of ${f.dataSource.name}`);
        }
        if (f.dataSource === f.source) {
          const alias = f.aliased(hostOffset, hostOffset + length);
          if (alias) throw f.fail('L2 table', l2Offset, `data cluster at ${hex(first.host)} overlaps the ${alias}`);
        }
        return { kind: 'data', offset, length, source: f.dataSource, hostOffset };
      case Unit.ZeroAlloc:
        return { kind: 'zero', offset, length, host: { source: f.dataSource, hostOffset } };
      case Unit.ZeroPlain:
        return { kind: 'zero', offset, length };
      default:
        return { kind: 'backing', offset, length };
    }
  }

  /**
   * The type and host offset of unit `u` of an L2 table (a cluster, or a
   * subcluster with extended L2 entries), as qcow2.txt "Cluster mapping" and
   * "Extended L2 Entries" define them.
   */
  private classify(l2: DataView, l2Offset: number, u: number): { type: Unit; host: number; hi: number; lo: number } {
    const f = this.f;
    const perCluster = f.extL2 ? L.SUBCLUSTERS_PER_CLUSTER : 1;
    const index = Math.floor(u / perCluster);
    const at = index * f.entryBytes;
    const hi = l2.getUint32(at);
    const lo = l2.getUint32(at + 4);
    if (hi & L.FLAG_COMPRESSED_HI) return { type: Unit.Compressed, host: 0, hi, lo };
    const cluster = (hi & L.OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & L.OFFSET_MASK_LO) >>> 0);
    let type: Unit;
    if (!f.extL2 && lo & L.FLAG_ZERO_LO) type = cluster ? Unit.ZeroAlloc : Unit.ZeroPlain;
    // Offset 0 is a valid data-file offset; "copied" tells it from unallocated there.
    else if (cluster === 0 && !(f.hasDataFile && hi & L.FLAG_COPIED_HI)) type = Unit.UnallocPlain;
    else type = Unit.Normal;
    if (type !== Unit.UnallocPlain && cluster % f.clusterSize !== 0) {
      throw f.fail('L2 table', l2Offset + at, `Cluster allocation offset ${hex(cluster)} unaligned (L2 offset: ${hex(l2Offset)}, L2 index: ${hex(index)})`);
    }
    if (!f.extL2) return { type, host: cluster, hi, lo };

    const sc = u % perCluster;
    const alloc = l2.getUint32(at + 12);
    const zero = l2.getUint32(at + 8);
    const bad = () => f.fail('L2 table', l2Offset + at, `Invalid cluster entry found (L2 index: ${hex(index)}, subcluster bitmap ${hex(zero)}:${hex(alloc)})`);
    if (type === Unit.Normal) {
      if (zero & alloc) throw bad();
      const host = cluster + sc * f.unitSize;
      if ((zero >>> sc) & 1) return { type: Unit.ZeroAlloc, host, hi, lo };
      if ((alloc >>> sc) & 1) return { type: Unit.Normal, host, hi, lo };
      return { type: Unit.UnallocAlloc, host, hi, lo };
    }
    if (alloc !== 0) throw bad();
    return { type: (zero >>> sc) & 1 ? Unit.ZeroPlain : Unit.UnallocPlain, host: 0, hi, lo };
  }

  /** "Compressed Clusters Descriptor": offset in the low x bits, extra sectors above, x = 62 - (cluster_bits - 8). */
  private compressedUnit(hi: number, lo: number, guestOffset: number, l2Offset: number): CompressedUnit {
    const f = this.f;
    const x = 62 - (f.header.clusterBits - 8);
    const hostOffset = (hi & ((1 << (x - 32)) - 1)) * 0x1_0000_0000 + (lo >>> 0);
    const sectors = ((hi & 0x3fffffff) >>> (x - 32)) & ((1 << (f.header.clusterBits - 8)) - 1);
    const hostLength = (sectors + 1) * 512 - (hostOffset % 512);
    if (hostOffset >= f.source.size) {
      throw f.fail('L2 table', l2Offset, `compressed cluster at ${hex(hostOffset)} lies past the end of the file`);
    }
    // Only where it starts: its stored length is rounded to sectors and may run on.
    const alias = f.aliased(hostOffset, hostOffset + 1);
    if (alias) throw f.fail('L2 table', l2Offset, `compressed cluster at ${hex(hostOffset)} lies in the ${alias}`);
    return { guestOffset, size: f.clusterSize, source: f.source, hostOffset, hostLength };
  }

  async decode(unit: CompressedUnit, out: Uint8Array): Promise<void> {
    const f = this.f;
    const input = await unit.source.read(unit.hostOffset, Math.min(unit.hostLength, f.source.size - unit.hostOffset));
    try {
      if (f.header.compressionType === L.COMPRESSION_ZSTD) zstdDecodeInto(input, out);
      else inflateRawInto(input, out);
    } catch (e) {
      if (e instanceof CodecError) throw f.fail('compressed cluster', unit.hostOffset, e.message);
      throw e;
    }
  }

  facts(): LayerFacts {
    const h = this.f.header;
    const data: { [key: string]: InfoValue } = {
      compat: h.version === 2 ? '0.10' : '1.1',
      'compression-type': h.compressionType === L.COMPRESSION_ZSTD ? 'zstd' : 'zlib',
      'refcount-bits': 2 ** h.refcountOrder,
    };
    if (h.version === 3) {
      data['lazy-refcounts'] = (h.compatible & L.COMPAT_LAZY_REFCOUNTS) !== 0;
      data['corrupt'] = (h.incompatible & L.INCOMPAT_CORRUPT) !== 0;
      data['extended-l2'] = this.f.extL2;
      if (h.dataFile !== undefined) data['data-file'] = h.dataFile;
      if (this.f.hasDataFile) data['data-file-raw'] = (h.autoclear & L.AUTOCLEAR_DATA_FILE_RAW) !== 0;
    }
    return {
      clusterSize: this.f.clusterSize,
      dirty: (h.incompatible & L.INCOMPAT_DIRTY) !== 0,
      formatSpecific: { type: 'qcow2', data },
    };
  }

  snapshots(): SnapshotInfo[] {
    return this.f.snapshotTable.map((s) => ({
      id: s.id,
      name: s.name,
      vmStateSize: s.vmStateSize,
      dateSec: s.dateSec,
      dateNsec: s.dateNsec,
      vmClockNsec: s.vmClockNsec,
      icount: s.icount,
      diskSize: s.diskSize ?? this.size,
    }));
  }

  /** Checks the whole file, whichever view this is: the active tables and every snapshot's. */
  check(signal?: AbortSignal): Promise<CheckResult> {
    const f = this.f;
    return checkQcow2({ source: f.source, header: f.header, snapshots: f.snapshotTable, size: this.size }, signal);
  }

  async atSnapshot(sel: SnapshotSelector): Promise<Layer> {
    const sn = this.f.snapshotTable.find((s) => (sel.id === undefined || s.id === sel.id) && (sel.name === undefined || s.name === sel.name));
    if (!sn) throw new SnapshotNotFoundError(this.source.name);
    const l1 = await this.f.readL1(`Snapshot L1 table of '${sn.name}'`, sn.l1TableOffset, sn.l1Size);
    return new Qcow2Layer(this.f, l1, this.backing?.name);
  }
}

async function readSnapshotTable(src: ByteSource, h: Qcow2Header): Promise<RawSnapshot[]> {
  const fail = (detail: string) => new ImageFormatError(src.name, 'snapshot table', h.snapshotsOffset, detail);
  if (h.nbSnapshots === 0) return [];
  if (h.nbSnapshots > L.MAX_SNAPSHOTS) throw fail('Too many snapshots');
  if (h.snapshotsOffset % 2 ** h.clusterBits !== 0 || h.snapshotsOffset >= src.size) throw fail('Snapshot table offset invalid');
  const out: RawSnapshot[] = [];
  let buf: Uint8Array = new Uint8Array(0);
  let bufStart = h.snapshotsOffset;
  let pos = 0;
  while (out.length < h.nbSnapshots) {
    const sn = parseSnapshotEntry(buf, pos, src.name, bufStart + pos);
    if (sn) {
      out.push(sn);
      pos += sn.length;
      continue;
    }
    // Entry incomplete: drop what was parsed and read the next chunk.
    const keep = buf.subarray(Math.min(pos, buf.length));
    bufStart += pos;
    pos = 0;
    if (bufStart + keep.length >= src.size) throw fail(`Snapshot table entry ${out.length} runs past the end of the file`);
    if (bufStart + keep.length - h.snapshotsOffset > MAX_SNAPSHOT_TABLE_BYTES) throw fail('Snapshot table too large');
    const more = await src.read(bufStart + keep.length, Math.min(SNAPSHOT_READ_CHUNK, src.size - bufStart - keep.length));
    buf = new Uint8Array(keep.length + more.length);
    buf.set(keep);
    buf.set(more, keep.length);
  }
  return out;
}

async function open(source: ByteSource, ctx: OpenContext): Promise<Layer> {
  const head = await source.read(0, Math.min(source.size, 64 * 1024));
  const first = parseHeader(head, source.name);
  const clusterSize = 2 ** first.clusterBits;
  const cluster = clusterSize > head.length && source.size > head.length ? await source.read(0, Math.min(source.size, clusterSize)) : head;
  const h = cluster === head ? first : parseHeader(cluster, source.name);
  const backingName = parseBackingName(cluster, h, source.name);

  const fail = (structure: string, offset: number, detail: string) => new ImageFormatError(source.name, structure, offset, detail);
  // Every L2 table covers clusterSize²/8 bytes; the L1 table must be long enough for the disk.
  const entryBytes = h.incompatible & L.INCOMPAT_EXTL2 ? 16 : 8;
  const span = clusterSize * (clusterSize / entryBytes);
  if (h.l1Size * 8 > L.MAX_L1_BYTES) throw fail('qcow2 header', L.H.l1Size, 'Active L1 table too large');
  if (h.l1Size < Math.ceil(h.size / span)) throw fail('qcow2 header', L.H.l1Size, 'L1 table is too small');
  if (h.refcountTableClusters * clusterSize > L.MAX_REFTABLE_BYTES) throw fail('qcow2 header', L.H.refcountTableClusters, 'Reference count table too large');
  if (h.refcountTableOffset % clusterSize !== 0) throw fail('qcow2 header', L.H.refcountTableOffset, 'Reference count table offset invalid');

  let dataSource = source;
  if (h.incompatible & L.INCOMPAT_DATA_FILE) dataSource = await ctx.opener.open(h.dataFile!, source, 'data file');

  const snapshots = await readSnapshotTable(source, h);
  const file = new Qcow2File(source, dataSource, h, snapshots);
  const l1 = await file.readL1('Active L1 table', h.l1TableOffset, h.l1Size, ctx.forCheck);
  // The tables must not overlap each other or the header; opened to be checked, check reports it instead.
  if (!ctx.forCheck) {
    const regions = fixedRegions(h);
    for (const [i, a] of regions.entries()) {
      const b = regions.slice(i + 1).find((r) => overlap(r, a.start, a.end));
      if (b) {
        const field = b.name === 'refcount table' ? L.H.refcountTableOffset : L.H.l1TableOffset;
        throw fail('qcow2 header', field, `the ${b.name} (${b.end - b.start} bytes at ${hex(b.start)}) overlaps the ${a.name} (${a.end - a.start} bytes at ${hex(a.start)})`);
      }
    }
  }
  return new Qcow2Layer(file, l1, backingName);
}

export const qcow2Driver: FormatDriver = {
  name: 'qcow2',
  probe: (head) => {
    if (head.length < 8) return 0;
    const v = viewOf(head);
    const version = v.getUint32(4);
    return v.getUint32(0) === L.MAGIC && version >= 2 ? 100 : 0;
  },
  open,
};

