/**
 * Writing QED: the header cluster(s) with the backing file name, the L1
 * table, then L2 tables and data clusters appended as guest data arrives,
 * each L2 table placed when its first cluster is written. Units arrive in
 * increasing order, so both tables are filled front to back and held only a
 * 64 KiB window at a time. Without a backing file the unit is 4 KiB (zero
 * runs inside a cluster stay holes, as with qemu-img); over a backing file it
 * is the whole cluster, since an allocated cluster hides the backing file
 * entirely, and units that must read as zero become zero clusters (entry 1).
 */
import type { ByteSink } from '../../io/sink.ts';
import { sizeOption, type BlockWriter, type CreateOptions, type FormatWriter } from '../../writer.ts';
import { OptionError, OptionValueError } from '../../errors.ts';
import { viewOf } from '../common.ts';
import * as L from './layout.ts';
import { buildHeader, headerClusters, maxImageSize, setEntry, type HeaderFields } from './build.ts';

/** qemu-img convert's default -S. */
const UNIT = 4096;
/** The part of a table held in memory and written at a time. */
const WINDOW = 64 * 1024;

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;

/** A table filled front to back, written a window at a time; windows never set stay holes, which read as unallocated. */
class TableWindow {
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  private window = -1;
  private dirty = false;

  constructor(
    private readonly sink: ByteSink,
    private readonly fileOffset: number,
    tableBytes: number,
  ) {
    this.bytes = new Uint8Array(Math.min(WINDOW, tableBytes));
    this.view = viewOf(this.bytes);
  }

  async set(index: number, value: number): Promise<void> {
    const perWindow = this.bytes.length / L.ENTRY_BYTES;
    const window = Math.floor(index / perWindow);
    if (window !== this.window) {
      await this.flush();
      this.bytes.fill(0);
      this.window = window;
    }
    setEntry(this.view, index - window * perWindow, value);
    this.dirty = true;
  }

  async flush(): Promise<void> {
    if (this.dirty) await this.sink.write(this.fileOffset + this.window * this.bytes.length, this.bytes);
    this.dirty = false;
  }
}

class QedWriter implements BlockWriter {
  readonly blockSize: number;
  private readonly tableBytes: number;
  private readonly tableEntries: number;
  private readonly l1: TableWindow;
  private l2: TableWindow | undefined;
  private l2Index = -1;
  /** The last cluster written and where it is (-1: a zero cluster). */
  private cluster = -1;
  private clusterOffset = 0;
  /** The end of the file: where the next table or cluster goes. */
  private next: number;

  constructor(
    private readonly sink: ByteSink,
    private readonly header: HeaderFields,
  ) {
    const cs = header.clusterSize;
    this.blockSize = header.backing ? cs : UNIT;
    this.tableBytes = header.tableSize * cs;
    this.tableEntries = this.tableBytes / L.ENTRY_BYTES;
    this.l1 = new TableWindow(sink, header.l1TableOffset, this.tableBytes);
    this.next = header.l1TableOffset + this.tableBytes;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const cs = this.header.clusterSize;
    for (let done = 0; done < data.length; ) {
      const guest = offset + done;
      const cluster = Math.floor(guest / cs);
      const within = guest - cluster * cs;
      const take = Math.min(data.length - done, cs - within);
      if (cluster !== this.cluster || this.clusterOffset < 0) {
        if (cluster <= this.cluster && (cluster < this.cluster || this.clusterOffset < 0)) throw new RangeError(`QED writer: cluster ${cluster} written after cluster ${this.cluster}`);
        const l2 = await this.l2For(cluster);
        this.cluster = cluster;
        this.clusterOffset = this.next;
        this.next += cs;
        await l2.set(cluster % this.tableEntries, this.clusterOffset);
      }
      await this.sink.write(this.clusterOffset + within, data.subarray(done, done + take));
      done += take;
    }
  }

  /** The L2 table that maps `cluster`, placed at the end of the file on first use. */
  private async l2For(cluster: number): Promise<TableWindow> {
    const index = Math.floor(cluster / this.tableEntries);
    if (index !== this.l2Index || !this.l2) {
      await this.l2?.flush();
      this.l2 = new TableWindow(this.sink, this.next, this.tableBytes);
      await this.l1.set(index, this.next);
      this.next += this.tableBytes;
      this.l2Index = index;
    }
    return this.l2;
  }

  writeCompressed(offset: number, _packed: Uint8Array, raw: Uint8Array): Promise<void> {
    return this.write(offset, raw);
  }

  /** Zero clusters: the range is whole clusters (the unit over a backing file), but for a short last one. */
  async writeZero(offset: number, length: number): Promise<void> {
    const cs = this.header.clusterSize;
    for (let c = Math.floor(offset / cs); c * cs < offset + length; c++) {
      if (c <= this.cluster) throw new RangeError(`QED writer: cluster ${c} written after cluster ${this.cluster}`);
      const l2 = await this.l2For(c);
      this.cluster = c;
      this.clusterOffset = -1;
      await l2.set(c % this.tableEntries, L.ZERO_CLUSTER);
    }
  }

  async finish(): Promise<void> {
    await this.l2?.flush();
    await this.l1.flush();
    await this.sink.write(0, buildHeader(this.header));
    await this.sink.commit(this.next);
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }
}

export const qedWriter: FormatWriter = {
  name: 'qed',
  optionNames: ['size', 'cluster_size', 'table_size', 'backing_file', 'backing_fmt'],
  async create(sink: ByteSink, opts: CreateOptions) {
    if (opts.compress) throw new OptionError('Compression not supported for this file format');
    const clusterSize = sizeOption(opts, 'cluster_size', 64 * 1024);
    if (clusterSize < L.MIN_CLUSTER_SIZE || clusterSize > L.MAX_CLUSTER_SIZE || !isPowerOfTwo(clusterSize)) {
      throw new OptionValueError(`QED cluster size must be within range [${L.MIN_CLUSTER_SIZE}, ${L.MAX_CLUSTER_SIZE}] and power of 2`);
    }
    const tableSize = sizeOption(opts, 'table_size', 4);
    if (tableSize < L.MIN_TABLE_SIZE || tableSize > L.MAX_TABLE_SIZE || !isPowerOfTwo(tableSize)) {
      throw new OptionValueError(`QED table size must be within range [${L.MIN_TABLE_SIZE}, ${L.MAX_TABLE_SIZE}] and power of 2`);
    }
    // qemu creates such images but cannot open them: it takes a one-cluster table for an overflow.
    if (tableSize === 1) throw new OptionValueError('QED table size 1 makes an image qemu cannot open; use 2 or more');
    const imageSize = Math.ceil(opts.size / 512) * 512;
    const max = maxImageSize(clusterSize, tableSize);
    if (imageSize > max) {
      throw new OptionValueError(`QED image size must be a non-zero multiple of cluster size and less than ${max} bytes`);
    }
    let backing: HeaderFields['backing'];
    if (opts.backing) {
      const name = new TextEncoder().encode(opts.backing.name);
      if (name.length > L.MAX_BACKING_NAME) throw new OptionValueError(`Backing file name too long: ${opts.backing.name}`);
      backing = { name, rawNoProbe: opts.backing.format === 'raw' };
    }
    const headerSize = headerClusters(clusterSize, backing?.name.length ?? 0);
    const header: HeaderFields = { clusterSize, tableSize, headerSize, l1TableOffset: headerSize * clusterSize, imageSize, backing };
    return new QedWriter(sink, header);
  },
};
