/**
 * Writing qcow2 (`convert -O qcow2`). The file grows in one direction: the
 * header cluster and the first refcount block, the L1 table, then for each
 * L2 range its L2 table followed by its data (and compressed) clusters, with
 * refcount blocks placed as the file reaches the ranges they cover, and last
 * the refcount table. Only the L1 table, the L2 table being filled and the
 * refcount blocks near the end of the file are kept in memory; everything
 * else is written as soon as it is complete. The header goes last, when the
 * refcount table's place is known.
 */
import type { ByteSink } from '../../io/sink.ts';
import type { BlockWriter, Codec, CreateOptions, FormatWriter } from '../../writer.ts';
import { OptionError, OptionValueError } from '../../errors.ts';
import { viewOf } from '../common.ts';
import { HostAllocator } from './allocator.ts';
import {
  buildHeader,
  orSubclusterBits,
  setCompressedEntry,
  setCopiedEntry,
  setZeroEntry,
  subclusterMask,
} from './build.ts';
import { parseQcow2Options, QCOW2_OPTION_NAMES, QCOW2_UNWRITTEN_NAMES, type Qcow2Params } from './options.ts';
import * as L from './layout.ts';

/** qemu-img convert's default -S: with preallocated clusters, zero 4 KiB blocks are simply not written. */
const PREALLOC_UNIT = 4096;
const TWO32 = 0x1_0000_0000;

/** The L2 table being filled. */
interface OpenTable {
  index: number;
  hostOffset: number;
  table: Uint8Array;
  view: DataView;
}

class Qcow2Writer implements BlockWriter {
  readonly blockSize: number;
  readonly codec?: Codec;
  readonly padsLastUnit = true;
  private readonly cs: number;
  private readonly entryBytes: number;
  private readonly l2Entries: number;
  private readonly subcluster: number;
  private readonly clusters: number;
  private readonly l1: Uint8Array;
  private readonly l1Offset: number;
  private readonly prealloc: boolean;
  private l2: OpenTable | undefined;
  /** With preallocation: the first L2 range not yet laid out. */
  private nextRange = 0;
  /** Byte offset where the next compressed cluster may start inside the last allocated cluster (0: none). */
  private tail = 0;

  constructor(
    private readonly sink: ByteSink,
    private readonly p: Qcow2Params,
    private readonly size: number,
    compress: boolean,
    private readonly backing: CreateOptions['backing'],
    private readonly alloc: HostAllocator,
  ) {
    this.cs = 2 ** p.clusterBits;
    this.entryBytes = p.extendedL2 ? 16 : 8;
    this.l2Entries = this.cs / this.entryBytes;
    this.subcluster = p.extendedL2 ? this.cs / L.SUBCLUSTERS_PER_CLUSTER : this.cs;
    this.clusters = Math.ceil(size / this.cs);
    this.prealloc = p.preallocation === 'metadata';
    // The unit: a whole cluster when compressing (clusters are compressed
    // whole); a subcluster with extended L2 entries (zero subclusters stay
    // unallocated); 4 KiB with preallocation (every cluster exists anyway,
    // and zero blocks stay holes in the file); else a cluster.
    this.blockSize = compress ? this.cs : p.extendedL2 ? this.subcluster : this.prealloc ? Math.min(this.cs, PREALLOC_UNIT) : this.cs;
    if (compress) this.codec = 'deflate-raw-4k';
    const l1Size = Math.ceil(this.clusters / this.l2Entries);
    this.l1 = new Uint8Array(l1Size * 8);
    const l1Clusters = Math.ceil(this.l1.length / this.cs);
    this.l1Offset = l1Clusters > 0 ? alloc.alloc(l1Clusters) * this.cs : 0;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.eachTable(offset, data.length, async (at, length) => {
      const first = Math.floor(at / this.cs);
      const n = Math.ceil((at + length) / this.cs) - first;
      const hosts = this.hostClusters(first, n);
      // Consecutive guest clusters in consecutive host clusters go out in one write.
      for (let i = 0; i < n; ) {
        let j = i + 1;
        while (j < n && hosts[j] === hosts[j - 1]! + 1) j++;
        const from = Math.max(at, (first + i) * this.cs);
        const to = Math.min(at + length, (first + j) * this.cs);
        await this.sink.write(hosts[i]! * this.cs + (from % this.cs), data.subarray(from - offset, to - offset));
        i = j;
      }
      if (this.p.extendedL2) this.markSubclusters(at, length, 'alloc');
    });
  }

  async writeCompressed(offset: number, packed: Uint8Array, raw: Uint8Array): Promise<void> {
    // qemu only keeps a compressed cluster that saves space. `packed` holds a
    // whole cluster even at the disk's short end (padsLastUnit).
    if (packed.length >= this.cs) return this.write(offset, raw);
    await this.eachTable(offset, raw.length, async (at) => {
      const host = this.placeCompressed(packed.length);
      await this.sink.write(host, packed);
      setCompressedEntry(this.l2!.view, this.entryAt(at), host, packed.length, this.p.clusterBits);
    });
  }

  async writeZero(offset: number, length: number): Promise<void> {
    await this.eachTable(offset, length, async (at, len) => {
      if (this.p.extendedL2) {
        this.markSubclusters(at, len, 'zero');
        return;
      }
      const first = Math.floor(at / this.cs);
      const n = Math.ceil((at + len) / this.cs) - first;
      if (this.p.version === 2) {
        // Version 2 has no zero flag: the clusters are allocated and left unwritten, which reads as zeros.
        this.hostClusters(first, n);
        return;
      }
      for (let c = first; c < first + n; c++) {
        const host = this.hostOf(c);
        if (host > 0) setCopiedEntry(this.l2!.view, this.entryAt(c * this.cs), host * this.cs, true);
        else setZeroEntry(this.l2!.view, this.entryAt(c * this.cs));
      }
    });
  }

  async finish(): Promise<void> {
    await this.closeTable();
    if (this.prealloc) await this.layOutRangesBefore(this.l1.length / 8);
    if (this.l1.length > 0) await this.sink.write(this.l1Offset, this.l1);
    const table = await this.alloc.finish();
    const header = this.header(table.offset, table.clusters);
    await this.sink.write(0, header);
    await this.sink.commit(this.alloc.next * this.cs);
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }

  /** The header cluster's bytes, once the refcount table's place is known (built at the start too, to refuse a name that does not fit). */
  header(refcountTableOffset: number, refcountTableClusters: number): Uint8Array {
    const p = this.p;
    return buildHeader({
      version: p.version,
      clusterBits: p.clusterBits,
      size: this.size,
      l1Size: this.l1.length / 8,
      l1TableOffset: this.l1Offset,
      refcountTableOffset,
      refcountTableClusters,
      incompatible: (p.compressionType !== L.COMPRESSION_ZLIB ? L.INCOMPAT_COMPRESSION : 0) | (p.extendedL2 ? L.INCOMPAT_EXTL2 : 0),
      compatible: p.lazyRefcounts ? L.COMPAT_LAZY_REFCOUNTS : 0,
      refcountOrder: p.refcountOrder,
      compressionType: p.compressionType,
      backing: this.backing,
    });
  }

  /** Calls `fn` for each part of [offset, offset + length) that one L2 table maps, with that table open. */
  private async eachTable(offset: number, length: number, fn: (at: number, length: number) => Promise<void>): Promise<void> {
    const span = this.cs * this.l2Entries;
    for (let at = offset; at < offset + length; ) {
      const index = Math.floor(at / span);
      const end = Math.min(offset + length, (index + 1) * span);
      await this.openTable(index);
      await fn(at, end - at);
      at = end;
    }
    await this.alloc.flush();
  }

  /** Byte offset in the open L2 table of the entry for guest offset `at`. */
  private entryAt(at: number): number {
    return (Math.floor(at / this.cs) % this.l2Entries) * this.entryBytes;
  }

  /** The host cluster of guest cluster c in the open table, 0 when it has none. */
  private hostOf(c: number): number {
    const v = this.l2!.view;
    const at = this.entryAt(c * this.cs);
    const hi = v.getUint32(at) & L.OFFSET_MASK_HI;
    const lo = (v.getUint32(at + 4) & L.OFFSET_MASK_LO) >>> 0;
    return (hi * TWO32 + lo) / this.cs;
  }

  /** Host clusters for guest clusters [first, first + n) of the open table; those without one get a contiguous run. */
  private hostClusters(first: number, n: number): number[] {
    const hosts: number[] = [];
    for (let c = first; c < first + n; c++) hosts.push(this.hostOf(c));
    const missing = hosts.findIndex((h) => h === 0);
    if (missing < 0) return hosts;
    const start = this.alloc.alloc(n - missing);
    for (let i = missing; i < n; i++) {
      hosts[i] = start + i - missing;
      setCopiedEntry(this.l2!.view, this.entryAt((first + i) * this.cs), hosts[i]! * this.cs);
    }
    return hosts;
  }

  /** Sets the allocation or zero bits of the subclusters [at, at + length) covers (the last one may be short). */
  private markSubclusters(at: number, length: number, kind: 'alloc' | 'zero'): void {
    const end = at + length;
    for (let c = Math.floor(at / this.cs); c * this.cs < end; c++) {
      const base = c * this.cs;
      const mask = subclusterMask(
        Math.floor((Math.max(at, base) - base) / this.subcluster),
        Math.ceil((Math.min(end, base + this.cs) - base) / this.subcluster),
      );
      orSubclusterBits(this.l2!.view, this.entryAt(base), kind === 'alloc' ? mask : 0, kind === 'zero' ? mask : 0);
    }
  }

  /**
   * Where `length` bytes of a compressed cluster go: right after the previous
   * one when the cluster it ends in can take another reference (possibly
   * running into a new cluster), else at the start of a new cluster.
   */
  private placeCompressed(length: number): number {
    const a = this.alloc;
    const tailCluster = Math.floor(this.tail / this.cs);
    if (this.tail % this.cs !== 0 && tailCluster === a.next - 1 && a.refcount(tailCluster) < a.maxRefcount) {
      const at = this.tail;
      const fits = at + length <= a.next * this.cs;
      if (fits || a.nextIsContiguous()) {
        a.addRef(tailCluster);
        if (!fits) a.alloc(1);
        this.tail = at + length;
        return at;
      }
    }
    const at = a.alloc(1) * this.cs;
    this.tail = at + length;
    return at;
  }

  private async openTable(index: number): Promise<void> {
    if (this.l2?.index === index) return;
    await this.closeTable();
    if (this.prealloc) await this.layOutRangesBefore(index);
    const table = new Uint8Array(this.cs);
    this.l2 = { index, hostOffset: this.alloc.alloc(1) * this.cs, table, view: viewOf(table) };
    this.nextRange = index + 1;
    if (this.prealloc) {
      // Every cluster of the range gets its host cluster now, right after the table.
      const n = Math.min(this.l2Entries, this.clusters - index * this.l2Entries);
      const start = this.alloc.alloc(n);
      for (let i = 0; i < n; i++) setCopiedEntry(this.l2.view, i * this.entryBytes, (start + i) * this.cs);
    }
  }

  private async closeTable(): Promise<void> {
    const t = this.l2;
    if (!t) return;
    await this.sink.write(t.hostOffset, t.table);
    setCopiedEntry(viewOf(this.l1), t.index * 8, t.hostOffset);
    this.l2 = undefined;
    await this.alloc.flush();
  }

  /** With preallocation, every L2 range before `index` that nothing was written to still gets its table and clusters. */
  private async layOutRangesBefore(index: number): Promise<void> {
    while (this.nextRange < index) {
      await this.openTable(this.nextRange);
      await this.closeTable();
    }
  }
}

export const qcow2Writer: FormatWriter = {
  name: 'qcow2',
  // Names qemu knows but vdisk does not write pass here, to be refused by name when parsed.
  optionNames: [...QCOW2_OPTION_NAMES, ...QCOW2_UNWRITTEN_NAMES],
  async create(sink: ByteSink, opts: CreateOptions) {
    const p = parseQcow2Options(opts, 'create');
    if (opts.compress && p.preallocation !== 'off') throw new OptionError('Compression and preallocation not supported at the same time');
    if (p.preallocation === 'falloc' || p.preallocation === 'full') {
      throw new OptionValueError(`Preallocation mode '${p.preallocation}' is not supported when writing qcow2 (use 'metadata' or 'off')`);
    }
    if (opts.compress && p.compressionType === L.COMPRESSION_ZSTD) {
      throw new OptionValueError('Compressing clusters with zstd is not supported (no zstd encoder); use compression_type=zlib');
    }
    // qemu keeps the virtual size in whole sectors.
    const size = Math.ceil(opts.size / 512) * 512;
    const entryBytes = p.extendedL2 ? 16 : 8;
    const l1Size = Math.ceil(Math.ceil(size / 2 ** p.clusterBits) / (2 ** p.clusterBits / entryBytes));
    if (l1Size > L.MAX_L1_ENTRIES) {
      throw new OptionValueError("The image size is too large for file format 'qcow2' (try using a larger cluster size)");
    }
    const writer = new Qcow2Writer(sink, p, size, opts.compress, opts.backing, new HostAllocator(sink, p.clusterBits, p.refcountOrder));
    writer.header(0, 0);
    return writer;
  },
};
