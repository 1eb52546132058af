/**
 * Host cluster allocation for the qcow2 writer, with the refcounts that go
 * with it ("Host cluster management"). Cluster 0 is the header and cluster 1
 * the first refcount block; after them clusters are handed out in file order
 * and never freed, so only the refcount block(s) around the end of the file
 * can still change: those stay in memory and the ones behind are written out
 * as allocation moves past them. A refcount block is placed at the first
 * cluster of the range it covers (or just before, when a contiguous run
 * would cross into that range), the way the file grows. The refcount table
 * goes at the very end, once the file's size is known.
 */
import type { ByteSink } from '../../io/sink.ts';
import { OptionValueError } from '../../errors.ts';
import { getRefcount, maxRefcount, setRefcount, setTableEntry } from './build.ts';
import * as L from './layout.ts';

/** The table is a list of 8-byte refcount block offsets. */
const TABLE_ENTRY = 8;

export class HostAllocator {
  readonly clusterSize: number;
  /** Refcounts one block holds. */
  readonly perBlock: number;
  readonly maxRefcount: number;
  /** The next free cluster: clusters [0, next) are allocated. */
  next = 0;
  /** Host offset of each range's refcount block, by range index (clusters [r·perBlock, (r+1)·perBlock)). */
  private readonly blockOffsets: number[] = [];
  /** Blocks that may still change, by range index. */
  private readonly live = new Map<number, Uint8Array>();

  constructor(
    private readonly sink: ByteSink,
    readonly clusterBits: number,
    private readonly refcountOrder: number,
  ) {
    this.clusterSize = 2 ** clusterBits;
    this.perBlock = (this.clusterSize * 8) / 2 ** refcountOrder;
    this.maxRefcount = maxRefcount(refcountOrder);
    // Cluster 0 is the header; the first refcount block follows it.
    this.blockOffsets[0] = this.clusterSize;
    this.live.set(0, new Uint8Array(this.clusterSize));
    this.next = 2;
    this.addRef(0);
    this.addRef(1);
  }

  private rangeOf(cluster: number): number {
    return Math.floor(cluster / this.perBlock);
  }

  /** Where a run of n clusters would start, and the ranges whose refcount blocks must be placed first (at `next`, in order). */
  private plan(n: number): { start: number; newBlocks: number[] } {
    const newBlocks: number[] = [];
    let start = this.next;
    for (;;) {
      const last = this.rangeOf(start + Math.max(n, 1) - 1);
      let missing = -1;
      for (let r = this.rangeOf(start); r <= last; r++) {
        if (this.blockOffsets[r] === undefined && !newBlocks.includes(r)) {
          missing = r;
          break;
        }
      }
      if (missing < 0) return { start, newBlocks };
      newBlocks.push(missing);
      start++;
    }
  }

  /** Allocates n contiguous clusters (refcount 1 each) and returns the first one's index. */
  alloc(n: number): number {
    const { start, newBlocks } = this.plan(n);
    newBlocks.forEach((r, i) => {
      const at = this.next + i;
      this.blockOffsets[r] = at * this.clusterSize;
      this.live.set(r, new Uint8Array(this.clusterSize));
      this.addRef(at);
    });
    this.next = start + n;
    for (let c = start; c < start + n; c++) this.addRef(c);
    return start;
  }

  /** True when allocating the next cluster needs no refcount block first, so it follows the last one directly. */
  nextIsContiguous(): boolean {
    return this.blockOffsets[this.rangeOf(this.next)] !== undefined;
  }

  refcount(cluster: number): number {
    const block = this.live.get(this.rangeOf(cluster));
    if (!block) throw new Error(`refcount block of cluster ${cluster} was already written`);
    return getRefcount(block, cluster % this.perBlock, this.refcountOrder);
  }

  /** One more reference to an allocated cluster (compressed clusters share host clusters). */
  addRef(cluster: number): void {
    const block = this.live.get(this.rangeOf(cluster));
    if (!block) throw new Error(`refcount block of cluster ${cluster} was already written`);
    const i = cluster % this.perBlock;
    setRefcount(block, i, this.refcountOrder, getRefcount(block, i, this.refcountOrder) + 1);
  }

  /** Writes the refcount blocks that can no longer change: those below the last allocated cluster's range. */
  async flush(): Promise<void> {
    const keep = this.rangeOf(Math.max(0, this.next - 1));
    for (const [r, block] of this.live) {
      if (r >= keep) continue;
      await this.sink.write(this.blockOffsets[r]!, block);
      this.live.delete(r);
    }
  }

  /**
   * Places the refcount table at the end of the file, large enough to cover
   * every cluster including its own, writes it and every remaining block, and
   * returns where it is. Nothing may be allocated afterwards.
   */
  async finish(): Promise<{ offset: number; clusters: number }> {
    let clusters = 1;
    for (;;) {
      const { start } = this.plan(clusters);
      const ranges = this.rangeOf(start + clusters - 1) + 1;
      const needed = Math.ceil((ranges * TABLE_ENTRY) / this.clusterSize);
      if (needed <= clusters) break;
      clusters = needed;
    }
    if (clusters * this.clusterSize > L.MAX_REFTABLE_BYTES) {
      throw new OptionValueError("The image size is too large for file format 'qcow2' (try using a larger cluster size)");
    }
    const first = this.alloc(clusters);
    const table = new Uint8Array(this.blockOffsets.length * TABLE_ENTRY);
    const v = new DataView(table.buffer);
    this.blockOffsets.forEach((offset, r) => setTableEntry(v, r * TABLE_ENTRY, offset));
    for (const [r, block] of this.live) await this.sink.write(this.blockOffsets[r]!, block);
    this.live.clear();
    await this.sink.write(first * this.clusterSize, table);
    return { offset: first * this.clusterSize, clusters };
  }
}
