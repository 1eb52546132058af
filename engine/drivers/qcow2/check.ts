/**
 * qcow2 `check`, read-only, with qemu-img 7.2's findings. It rebuilds the
 * reference count of every host cluster from what uses it (qcow2.txt "Host
 * cluster management"): the header cluster, the L1 and L2 tables of the image
 * and of every internal snapshot ("Snapshots"), the snapshot table, the
 * refcount table and blocks, and persistent bitmaps ("Bitmaps"); compares it
 * with the stored refcounts; then checks the "copied" flags of the active
 * tables. Messages, counts and the allocation statistics are qemu's, down to
 * reading past the end of the file as zeros as qemu does.
 *
 * Memory: one counter per cluster of the file (never of the guest), the
 * refcount table (at most 8 MiB, qemu's limit) and one table or refcount block
 * at a time through a bounded cache. Work is bounded by the file size, so a
 * small crafted file cannot make the check endless.
 */
import type { CheckResult } from '../../driver.ts';
import { LruCache } from '../../cache.ts';
import { ImageFormatError, throwIfAborted, UnsupportedFeatureError } from '../../errors.ts';
import type { ByteSource } from '../../io/source.ts';
import { u64be, viewOf } from '../common.ts';
import type { Qcow2Header, RawSnapshot } from './header.ts';
import * as L from './layout.ts';

export interface Qcow2CheckInput {
  source: ByteSource;
  header: Qcow2Header;
  snapshots: readonly RawSnapshot[];
  /** Guest size in bytes (whole sectors, as qemu keeps it). */
  size: number;
}

/** qemu refuses to check files of more clusters than an int holds (EFBIG). */
const INT_MAX = 0x7fffffff;
/** The most memory the per-cluster counters may take; bigger files are refused. */
const MAX_COUNTER_BYTES = 256 * 1024 * 1024;
/** L1 entries read at a time (an L1 table may be 32 MiB). */
const L1_CHUNK_ENTRIES = 8192;
/** Bitmap table entries read at a time. */
const BITMAP_CHUNK_ENTRIES = 8192;
/** Refcount blocks kept for the lookups of the "copied" check. */
const REFBLOCK_CACHE_BYTES = 8 * 1024 * 1024;
/** L2 tables kept: snapshots share most of theirs with the image. */
const L2_CACHE_BYTES = 8 * 1024 * 1024;
/**
 * Table entries a check may visit: at least this many, or one per byte of the
 * file. A sound image visits each L2 table once per L1 table that uses it; only
 * tables referenced over and over (a crafted L1) get near the limit.
 */
const MIN_WORK = 2 ** 26;
/** Messages kept; past this they are counted, as a flood of them says nothing more. */
const MAX_MESSAGES = 100_000;

const hex = (n: number) => n.toString(16);
/** The hex digits of a 64-bit value held as two 32-bit words. */
const hex64 = (hi: number, lo: number) => (hi ? hex(hi) + hex(lo).padStart(8, '0') : hex(lo));
/** C's "%#x": a 0x prefix except for zero. */
const hexAlt = (n: number) => (n ? '0x' + hex(n) : '0');
const TWO32 = 0x1_0000_0000;

/** qemu stopped the check with an error code: no summary, only "Check failed: REASON". */
class CheckStopped extends Error {}

type Refcount = number | bigint;
/** A stored refcount could not be read (qemu's -EIO from qcow2_get_refcount). */
const EIO = null;

/** The computed reference counts: one counter per cluster of the file, at the image's refcount width. */
class Counters {
  readonly values: Uint8Array | Uint16Array | Uint32Array | Float64Array;
  /** Clusters counted: the file's, plus the partly written cluster after it once something references it. */
  length: number;
  readonly max: number;

  constructor(clusters: number, bits: number) {
    // One spare counter: qemu lets references reach less than a cluster past the end of the file.
    const n = clusters + 1;
    this.values = bits <= 8 ? new Uint8Array(n) : bits === 16 ? new Uint16Array(n) : bits === 32 ? new Uint32Array(n) : new Float64Array(n);
    this.length = clusters;
    this.max = 2 ** bits - 1;
  }

  get(k: number): number {
    return this.values[k] ?? 0;
  }
}

/** The stored refcounts, read like qemu's qcow2_get_refcount (refcount blocks through a bounded cache). */
class StoredRefcounts {
  private readonly cache: LruCache<number, DataView>;
  /** Refcounts per block. */
  readonly perBlock: number;
  private readonly bits: number;
  /** qemu reports the first unaligned refcount block once, then stays silent. */
  private signalled = false;
  /** The block `get` read last, so that runs of lookups in one block cost no cache lookup. */
  private lastIndex = -1;
  private lastBlock: DataView | undefined | typeof EIO = undefined;

  constructor(
    private readonly c: Checker,
    private readonly table: DataView,
  ) {
    this.bits = 2 ** c.h.refcountOrder;
    this.perBlock = (c.cs * 8) / this.bits;
    this.cache = new LruCache(Math.max(REFBLOCK_CACHE_BYTES, c.cs), (v) => v.byteLength);
  }

  get entries(): number {
    return this.table.byteLength / 8;
  }

  /** Refcount table entry `i` as two words. */
  entry(i: number): { hi: number; lo: number } {
    return { hi: this.table.getUint32(i * 8), lo: this.table.getUint32(i * 8 + 4) };
  }

  /** The refcount block holding `cluster`, undefined when it reads as zeros, EIO when qemu fails. */
  async block(cluster: number): Promise<DataView | undefined | typeof EIO> {
    const index = Math.floor(cluster / this.perBlock);
    if (index >= this.entries) return undefined;
    const e = this.entry(index);
    const hi = e.hi;
    const lo = (e.lo & ~L.REFT_RESERVED_LO) >>> 0;
    const offset = hi * TWO32 + lo;
    if (offset === 0) return undefined;
    if (lo % this.c.cs !== 0) {
      if (!this.signalled) {
        this.signalled = true;
        this.c.message(
          `qcow2: Image is corrupt: Refblock offset 0x${hex64(hi, lo)} unaligned (reftable index: ${hexAlt(index)}); ` +
            'further non-fatal corruption events will be suppressed',
        );
      }
      return EIO;
    }
    if (offset + this.c.cs > L.MAX_REQUEST_END) return EIO;
    return this.cache.getOrLoad(offset, async () => viewOf(await this.c.read(offset, this.c.cs)));
  }

  /** The refcount of `cluster` in its block. */
  valueIn(block: DataView | undefined, cluster: number): Refcount {
    if (!block) return 0;
    const i = cluster % this.perBlock;
    switch (this.bits) {
      case 64: {
        const hi = block.getUint32(i * 8);
        const lo = block.getUint32(i * 8 + 4);
        // Exact as a number below 2^53; past that only a crafted image goes, and it is printed exactly.
        return hi < 0x200000 ? hi * TWO32 + lo : (BigInt(hi) << 32n) | BigInt(lo);
      }
      case 32:
        return block.getUint32(i * 4);
      case 16:
        return block.getUint16(i * 2);
      case 8:
        return block.getUint8(i);
      default: {
        // Narrow entries fill each byte from its least significant bit.
        const bit = i * this.bits;
        return (block.getUint8(bit >>> 3) >>> (bit & 7)) & ((1 << this.bits) - 1);
      }
    }
  }

  /** The refcount of `cluster`; undefined when its block is not the one read last (then call `get`). */
  cached(cluster: number): Refcount | typeof EIO | undefined {
    if (Math.floor(cluster / this.perBlock) !== this.lastIndex) return undefined;
    return this.lastBlock === EIO ? EIO : this.valueIn(this.lastBlock, cluster);
  }

  async get(cluster: number): Promise<Refcount | typeof EIO> {
    const block = await this.block(cluster);
    this.lastIndex = Math.floor(cluster / this.perBlock);
    this.lastBlock = block;
    return block === EIO ? EIO : this.valueIn(block, cluster);
  }
}

class Checker {
  readonly src: ByteSource;
  readonly h: Qcow2Header;
  readonly cs: number;
  readonly extL2: boolean;
  readonly entryBytes: number;
  readonly l2Entries: number;
  readonly hasDataFile: boolean;
  readonly fileSize: number;
  counts!: Counters;

  private readonly messages: string[] = [];
  private dropped = 0;
  corruptions = 0;
  leaks = 0;
  checkErrors = 0;
  allocated = 0;
  fragmented = 0;
  compressed = 0;
  private work = 0;
  private readonly workLimit: number;
  private readonly l2Cache = new LruCache<number, DataView>(L2_CACHE_BYTES, (v) => v.byteLength);

  constructor(
    private readonly input: Qcow2CheckInput,
    private readonly signal?: AbortSignal,
  ) {
    this.src = input.source;
    this.h = input.header;
    this.cs = 2 ** this.h.clusterBits;
    this.extL2 = (this.h.incompatible & L.INCOMPAT_EXTL2) !== 0;
    this.entryBytes = this.extL2 ? 16 : 8;
    this.l2Entries = this.cs / this.entryBytes;
    this.hasDataFile = (this.h.incompatible & L.INCOMPAT_DATA_FILE) !== 0;
    this.fileSize = this.src.size;
    this.workLimit = Math.max(MIN_WORK, this.fileSize);
  }

  /** Adds a line; a function is only called while lines are still kept (floods cost no formatting). */
  message(line: string | (() => string)): void {
    if (this.messages.length < MAX_MESSAGES) this.messages.push(typeof line === 'string' ? line : line());
    else this.dropped++;
  }

  corrupt(line: string | (() => string)): void {
    this.corruptions++;
    this.message(line);
  }

  /** Reads like qemu's bdrv_pread on the image file: zeros past its end, EIO past the largest request. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset + length > L.MAX_REQUEST_END) throw new CheckStopped('Input/output error');
    if (offset >= this.fileSize) return new Uint8Array(length);
    return this.src.read(offset, length);
  }

  /** Charges `entries` visited table entries against the budget. */
  spend(entries: number, structure: string, offset: number): void {
    this.work += entries;
    if (this.work > this.workLimit) {
      throw new ImageFormatError(
        this.src.name,
        structure,
        offset,
        `the tables reference more than ${this.workLimit} entries (the same tables over and over); the check stops here`,
      );
    }
  }

  /** One more reference to every cluster the byte range touches (qemu's qcow2_inc_refcounts_imrt). */
  inc(offset: number, size: number): void {
    if (size <= 0) return;
    // The last cluster may be partly written, so a reference may reach less than a cluster past the end.
    if (offset + size - this.fileSize >= this.cs) {
      this.corrupt(() => `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(offset)} size 0x${hex(size)}`);
      return;
    }
    const counts = this.counts;
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + size - 1) / this.cs);
    for (let k = first; k <= last; k++) {
      if (k >= counts.length) counts.length = k + 1;
      const n = counts.values[k]!;
      if (n === counts.max) {
        this.corrupt(() => `ERROR: overflow cluster offset=0x${hex(k * this.cs)}`);
        this.message('Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing');
        continue;
      }
      counts.values[k] = n + 1;
    }
  }

  /** An L1 table and the L2 tables it points to (qemu's check_refcounts_l1); `active` gathers the allocation statistics. */
  async checkL1(offset: number, entries: number, active: boolean): Promise<void> {
    if (entries === 0) return;
    this.inc(offset, entries * 8);
    for (let start = 0; start < entries; start += L1_CHUNK_ENTRIES) {
      const n = Math.min(L1_CHUNK_ENTRIES, entries - start);
      let chunk: DataView;
      try {
        chunk = viewOf(await this.read(offset + start * 8, n * 8));
      } catch (e) {
        if (e instanceof CheckStopped) this.internalError('ERROR: I/O error in check_refcounts_l1');
        throw e;
      }
      this.spend(n, 'L1 table', offset);
      for (let i = 0; i < n; i++) {
        const hi = chunk.getUint32(i * 8);
        const lo = chunk.getUint32(i * 8 + 4);
        if (hi === 0 && lo === 0) continue;
        if (hi & L.L1_RESERVED_HI || lo & L.L1_RESERVED_LO) this.corrupt(`ERROR found L1 entry with reserved bits set: ${hex64(hi, lo)}`);
        const l2Offset = (hi & L.OFFSET_MASK_HI) * TWO32 + ((lo & L.OFFSET_MASK_LO) >>> 0);
        this.inc(l2Offset, this.cs);
        if (l2Offset % this.cs !== 0) this.corrupt(`ERROR l2_offset=${hex(l2Offset)}: Table is not cluster aligned; L1 entry corrupted`);
        await this.checkL2(l2Offset, active);
      }
    }
  }

  private internalError(line: string): void {
    this.checkErrors++;
    this.message(line);
  }

  /** One L2 table as qemu reads it: a cluster's worth from any offset, zeros past the end of the file. */
  private l2Table(offset: number): Promise<DataView> {
    return this.l2Cache.getOrLoad(offset, async () => viewOf(await this.read(offset, this.cs)));
  }

  /** The entries of one L2 table (qemu's check_refcounts_l2). */
  async checkL2(l2Offset: number, active: boolean): Promise<void> {
    throwIfAborted(this.signal, this.src.name);
    this.spend(this.l2Entries, 'L2 table', l2Offset);
    const table = await this.l2Table(l2Offset);
    const cs = this.cs;
    const eb = this.entryBytes;
    let nextContiguous = 0;
    for (let i = 0; i < this.l2Entries; i++) {
      const at = i * eb;
      const hi = table.getUint32(at);
      const lo = table.getUint32(at + 4);
      const zeroBits = this.extL2 ? table.getUint32(at + 8) : 0;
      const allocBits = this.extL2 ? table.getUint32(at + 12) : 0;
      if (hi === 0 && lo === 0 && allocBits === 0) continue;

      if (hi & L.FLAG_COMPRESSED_HI) {
        this.compressedEntry(i, hi, lo, zeroBits | allocBits, active);
        continue;
      }
      if (hi & L.L2_STD_RESERVED_HI || lo & L.L2_STD_RESERVED_LO) this.corrupt(`ERROR found l2 entry with reserved bits set: ${hex64(hi, lo)}`);
      const offset = (hi & L.OFFSET_MASK_HI) * TWO32 + ((lo & L.OFFSET_MASK_LO) >>> 0);
      const zeroFlag = !this.extL2 && (lo & L.FLAG_ZERO_LO) !== 0;
      // Offset 0 is a valid data-file offset; "copied" tells it from unallocated there.
      const unallocated = !zeroFlag && offset === 0 && !(this.hasDataFile && hi & L.FLAG_COPIED_HI);
      if (unallocated) {
        if (allocBits !== 0) this.corrupt('ERROR: Unallocated cluster has non-zero subcluster allocation map');
        continue;
      }
      // A zero cluster without a host cluster uses nothing.
      if (zeroFlag && offset === 0) continue;

      if (zeroBits & allocBits) this.corrupt(`ERROR offset=${hex(offset)}: Allocated cluster has corrupted subcluster allocation bitmap`);
      if (offset % cs !== 0) {
        const holdsData = this.extL2 ? allocBits !== 0 : !zeroFlag;
        this.corrupt(
          holdsData
            ? `ERROR offset=${hex(offset)}: Data cluster is not properly aligned; L2 entry corrupted.`
            : `ERROR offset=${hex(offset)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`,
        );
      }
      if (active) {
        this.allocated++;
        if (nextContiguous && offset !== nextContiguous) this.fragmented++;
        nextContiguous = offset + cs;
      }
      if (!this.hasDataFile) this.inc(offset, cs);
    }
  }

  /** "Compressed Clusters Descriptor": the host bytes it covers are counted, every cluster they touch. */
  private compressedEntry(index: number, hi: number, lo: number, bitmap: number, active: boolean): void {
    const shift = 62 - (this.h.clusterBits - 8);
    const offsetHi = hi & ((1 << (shift - 32)) - 1);
    const coffset = offsetHi * TWO32 + lo;
    if (hi & L.FLAG_COPIED_HI) {
      this.corrupt(`ERROR: coffset=0x${hex64(offsetHi, lo)}: copied flag must never be set for compressed clusters`);
      hi &= ~L.FLAG_COPIED_HI;
    }
    if (this.hasDataFile) {
      this.corrupt(`ERROR compressed cluster ${index} with data file, entry=0x${hex64(hi >>> 0, lo)}`);
      return;
    }
    if (bitmap !== 0) {
      this.corrupt(`ERROR compressed cluster ${index} with non-zero subcluster allocation bitmap, entry=0x${hex64(hi >>> 0, lo)}`);
      return;
    }
    const sectors = ((hi & 0x3fffffff) >>> (shift - 32)) & ((1 << (this.h.clusterBits - 8)) - 1);
    this.inc(coffset, (sectors + 1) * 512 - (coffset % 512));
    if (active) {
      this.allocated++;
      this.compressed++;
      // qemu counts every compressed cluster as fragmented: it re-reads shared sectors.
      this.fragmented++;
    }
  }

  /** Version 3 snapshot entries must record the disk size and the 64-bit VM state size (16 bytes of extra data). */
  checkSnapshotEntries(): void {
    if (this.h.version !== 3) return;
    this.input.snapshots.forEach((sn, i) => {
      if (sn.diskSize === undefined) this.corrupt(`ERROR snapshot table entry ${i} is incomplete`);
    });
  }

  /** Every internal snapshot's L1 table and the L2 tables under it; then the snapshot table itself. */
  async checkSnapshots(): Promise<void> {
    const snapshots = this.input.snapshots;
    if (this.hasDataFile && snapshots.length > 0) this.corrupt(`ERROR ${snapshots.length} snapshots in image with data file`);
    for (const sn of snapshots) {
      if (sn.l1TableOffset % this.cs !== 0) {
        this.corrupt(`ERROR snapshot ${sn.id} (${sn.name}) l1_offset=${hexAlt(sn.l1TableOffset)}: L1 table is not cluster aligned; snapshot table entry corrupted`);
        continue;
      }
      if (sn.l1Size > L.MAX_L1_ENTRIES) {
        this.corrupt(`ERROR snapshot ${sn.id} (${sn.name}) l1_size=${hexAlt(sn.l1Size)}: L1 table is too large; snapshot table entry corrupted`);
        continue;
      }
      await this.checkL1(sn.l1TableOffset, sn.l1Size, false);
    }
    if (snapshots.length > 0) {
      // The table's length as qemu measures it: without the padding after the last entry.
      const last = snapshots[snapshots.length - 1]!;
      const size = snapshots.reduce((sum, s) => sum + s.length, 0) - last.length + last.usedLength;
      this.inc(this.h.snapshotsOffset, size);
    }
  }

  /** Persistent bitmaps: the directory, each bitmap table and the clusters they point to. */
  async checkBitmaps(): Promise<void> {
    const ext = this.h.bitmaps;
    if (!ext || ext.count === 0) return;
    this.inc(ext.directoryOffset, ext.directorySize);
    // qemu fails the check (EINVAL) on a directory it cannot load.
    if (ext.directorySize > L.MAX_BITMAP_DIRECTORY_BYTES) this.stopCorrupt();
    const dir = viewOf(await this.read(ext.directoryOffset, ext.directorySize));
    const tables: { offset: number; size: number }[] = [];
    let at = 0;
    for (let n = 0; n < ext.count; n++) {
      if (at + L.BITMAP_DIR.fixedLength > dir.byteLength) this.stopCorrupt();
      const extra = dir.getUint32(at + L.BITMAP_DIR.extraDataSize);
      const nameSize = dir.getUint16(at + L.BITMAP_DIR.nameSize);
      const length = L.BITMAP_DIR.fixedLength + extra + nameSize;
      if (at + length > dir.byteLength) this.stopCorrupt();
      const offset = u64be(dir, at + L.BITMAP_DIR.tableOffset);
      const size = dir.getUint32(at + L.BITMAP_DIR.tableSize);
      if (offset % this.cs !== 0 || size > L.MAX_BITMAP_TABLE_ENTRIES) this.stopCorrupt();
      tables.push({ offset, size });
      at += Math.ceil(length / 8) * 8;
    }
    if (at !== dir.byteLength) this.stopCorrupt();

    for (const t of tables) {
      this.inc(t.offset, t.size * 8);
      for (let start = 0; start < t.size; start += BITMAP_CHUNK_ENTRIES) {
        const n = Math.min(BITMAP_CHUNK_ENTRIES, t.size - start);
        this.spend(n, 'bitmap table', t.offset);
        const chunk = viewOf(await this.read(t.offset + start * 8, n * 8));
        for (let i = 0; i < n; i++) {
          const hi = chunk.getUint32(i * 8);
          const lo = chunk.getUint32(i * 8 + 4);
          const offset = (hi & L.OFFSET_MASK_HI) * TWO32 + ((lo & L.OFFSET_MASK_LO) >>> 0);
          const bad = hi & L.BITMAP_TABLE_RESERVED_HI || lo & L.BITMAP_TABLE_RESERVED_LO || (offset !== 0 && (lo & L.BITMAP_TABLE_ALL_ONES || offset % this.cs !== 0));
          if (bad) this.corruptions++;
          else if (offset !== 0) this.inc(offset, this.cs);
        }
      }
    }
  }

  private stopCorrupt(): never {
    this.corruptions++;
    throw new CheckStopped('Invalid argument');
  }

  /** The refcount blocks: each counted once, and where the table points somewhere a block cannot be. */
  checkRefblocks(stored: StoredRefcounts): void {
    for (let i = 0; i < stored.entries; i++) {
      const { hi, lo } = stored.entry(i);
      if (lo & L.REFT_RESERVED_LO) {
        this.corrupt(`ERROR refcount table entry ${i} has reserved bits set`);
        continue;
      }
      if (lo % this.cs !== 0) {
        this.corrupt(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
        continue;
      }
      const offset = hi * TWO32 + lo;
      const cluster = Math.floor(offset / this.cs);
      if (cluster >= this.counts.length) {
        this.corrupt(`ERROR refcount block ${i} is outside image`);
        continue;
      }
      if (offset === 0) continue;
      this.inc(offset, this.cs);
      const n = this.counts.get(cluster);
      if (n !== 1) this.corrupt(`ERROR refcount block ${i} refcount=${n}`);
    }
  }

  /** Stored against computed, cluster by cluster; returns the highest cluster in use either way. */
  async compare(stored: StoredRefcounts): Promise<number> {
    let highest = 0;
    const counts = this.counts;
    for (let first = 0; first < counts.length; first += stored.perBlock) {
      throwIfAborted(this.signal, this.src.name);
      const block = await stored.block(first);
      const end = Math.min(counts.length, first + stored.perBlock);
      for (let i = first; i < end; i++) {
        if (block === EIO) {
          this.internalError(`Can't get refcount for cluster ${i}: Input/output error`);
          continue;
        }
        const s = stored.valueIn(block, i);
        const c = counts.get(i);
        if (s > 0 || c > 0) highest = i;
        if (s === c) continue;
        if (s < c) this.corrupt(`ERROR cluster ${i} refcount=${s} reference=${c}`);
        else {
          this.leaks++;
          this.message(`Leaked cluster ${i} refcount=${s} reference=${c}`);
        }
      }
    }
    return highest;
  }

  /** The "copied" flag of each active L1 and L2 entry must say whether the stored refcount is exactly one. */
  async checkCopiedFlags(stored: StoredRefcounts): Promise<void> {
    const { l1TableOffset, l1Size } = this.h;
    for (let start = 0; start < l1Size; start += L1_CHUNK_ENTRIES) {
      const n = Math.min(L1_CHUNK_ENTRIES, l1Size - start);
      const chunk = viewOf(await this.read(l1TableOffset + start * 8, n * 8));
      for (let i = 0; i < n; i++) {
        const hi = chunk.getUint32(i * 8);
        const lo = chunk.getUint32(i * 8 + 4);
        const l2Offset = (hi & L.OFFSET_MASK_HI) * TWO32 + ((lo & L.OFFSET_MASK_LO) >>> 0);
        if (l2Offset === 0) continue;
        const refcount = await stored.get(Math.floor(l2Offset / this.cs));
        // qemu skips what it cannot read here, silently.
        if (refcount === EIO) continue;
        if ((refcount === 1) !== ((hi & L.FLAG_COPIED_HI) !== 0)) {
          this.corrupt(`ERROR OFLAG_COPIED L2 cluster: l1_index=${start + i} l1_entry=${hex64(hi, lo)} refcount=${refcount}`);
        }
        await this.checkCopiedL2(stored, l2Offset);
      }
    }
  }

  private async checkCopiedL2(stored: StoredRefcounts, l2Offset: number): Promise<void> {
    throwIfAborted(this.signal, this.src.name);
    this.spend(this.l2Entries, 'L2 table', l2Offset);
    const table = await this.l2Table(l2Offset);
    for (let j = 0; j < this.l2Entries; j++) {
      const at = j * this.entryBytes;
      const hi = table.getUint32(at);
      const lo = table.getUint32(at + 4);
      if (hi & L.FLAG_COMPRESSED_HI) continue;
      const offset = (hi & L.OFFSET_MASK_HI) * TWO32 + ((lo & L.OFFSET_MASK_LO) >>> 0);
      const zeroFlag = !this.extL2 && (lo & L.FLAG_ZERO_LO) !== 0;
      const normal = zeroFlag ? offset !== 0 : offset !== 0 || (this.hasDataFile && (hi & L.FLAG_COPIED_HI) !== 0);
      if (!normal) continue;
      let refcount: Refcount | typeof EIO | undefined = 1;
      if (!this.hasDataFile) {
        const cluster = Math.floor(offset / this.cs);
        refcount = stored.cached(cluster);
        if (refcount === undefined) refcount = await stored.get(cluster);
      }
      if (refcount === EIO) continue;
      if ((refcount === 1) !== ((hi & L.FLAG_COPIED_HI) !== 0)) {
        this.corrupt(`ERROR OFLAG_COPIED data cluster: l2_entry=${hex64(hi, lo)} refcount=${refcount}`);
      }
    }
  }

  async run(): Promise<CheckResult> {
    // qemu reads the snapshot table for the check before it counts anything.
    this.checkSnapshotEntries();
    const clusters = Math.ceil(this.fileSize / this.cs);
    if (clusters > INT_MAX) {
      this.checkErrors++;
      throw new CheckStopped('File too large');
    }
    const bits = 2 ** this.h.refcountOrder;
    const counterBytes = (clusters + 1) * (bits <= 8 ? 1 : bits === 64 ? 8 : bits / 8);
    if (counterBytes > MAX_COUNTER_BYTES) {
      throw new UnsupportedFeatureError(this.src.name, `checking a file of ${clusters} clusters (${counterBytes} bytes of counters, at most ${MAX_COUNTER_BYTES})`);
    }
    this.counts = new Counters(clusters, bits);

    // At most 8 MiB: open refuses more, as qemu does.
    const reftableBytes = this.h.refcountTableClusters * this.cs;
    const stored = new StoredRefcounts(this, viewOf(await this.read(this.h.refcountTableOffset, reftableBytes)));

    this.inc(0, this.cs);
    await this.checkL1(this.h.l1TableOffset, this.h.l1Size, true);
    await this.checkSnapshots();
    this.inc(this.h.refcountTableOffset, reftableBytes);
    await this.checkBitmaps();
    this.checkRefblocks(stored);
    const highest = await this.compare(stored);
    await this.checkCopiedFlags(stored);
    return {
      checkErrors: this.checkErrors,
      corruptions: this.corruptions,
      leaks: this.leaks,
      imageEndOffset: (highest + 1) * this.cs,
      totalClusters: Math.ceil(this.input.size / this.cs),
      allocatedClusters: this.allocated,
      fragmentedClusters: this.fragmented,
      compressedClusters: this.compressed,
      messages: this.lines(),
    };
  }

  /** The messages, with a count of those not kept. */
  lines(): string[] {
    return this.dropped ? [...this.messages, `(${this.dropped} more messages not shown)`] : this.messages;
  }
}

/** qemu-img check of a qcow2 file; never writes. */
export async function checkQcow2(input: Qcow2CheckInput, signal?: AbortSignal): Promise<CheckResult> {
  const c = new Checker(input, signal);
  try {
    return await c.run();
  } catch (e) {
    if (!(e instanceof CheckStopped)) throw e;
    return { checkErrors: c.checkErrors, corruptions: c.corruptions, leaks: c.leaks, messages: c.lines(), failure: e.message };
  }
}
