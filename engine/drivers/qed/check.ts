/**
 * QED `check`, read-only, with qemu-img 7.2's findings (its qed-check.c, the
 * "Consistency checking" of qed_spec.rst): every L2 table the L1 table names
 * and every data cluster an L2 table names must be a valid offset ("Tables")
 * and be used once; the clusters of the file past the header that nothing
 * uses are leaks. qemu prints nothing while it checks: the counts are all.
 *
 * Offsets are tested as qemu tests them (qed_check_cluster_offset and
 * qed_check_table_offset are `clusterFits` and `tableFits`) against the file
 * size the header was parsed with, which for a check is qemu's: the file's
 * length in whole sectors (see the driver's `open`). qemu's own test refuses
 * every table of a one-cluster table_size, so it cannot open such an image,
 * even one it made; those are checked here as the spec has them.
 *
 * Memory: one bit per cluster of the file (never of the guest) and one page
 * of a table at a time; tables reach 1 GiB, so they are read in pages.
 */
import type { CheckResult } from '../../driver.ts';
import { throwIfAborted } from '../../errors.ts';
import type { ByteSource } from '../../io/source.ts';
import { u64le, viewOf } from '../common.ts';
import { clusterFits, tableFits, type QedHeader } from './header.ts';
import * as L from './layout.ts';

/** Table bytes read at a time. */
const PAGE_BYTES = 64 * 1024;

/** qemu's `last + cluster_size == offset` on u64 offsets. */
function follows(last: number | bigint, offset: number | bigint, cs: number): boolean {
  if (typeof last === 'number' && typeof offset === 'number') return last + cs === offset;
  return BigInt.asUintN(64, BigInt(last) + BigInt(cs)) === BigInt(offset);
}

class QedChecker {
  private readonly cs: number;
  /** Whole clusters of the file; the used bitmap has one bit for each. */
  private readonly nclusters: number;
  private readonly used: Uint8Array;
  corruptions = 0;
  allocated = 0;
  fragmented = 0;

  constructor(
    private readonly source: ByteSource,
    private readonly h: QedHeader,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.cs = h.clusterSize;
    this.nclusters = h.fileClusters / this.cs;
    this.used = new Uint8Array(Math.ceil(this.nclusters / 8));
  }

  /** Marks `n` clusters from `offset` used; each one already used is a corruption. True when none was. */
  private markUsed(offset: number, n: number): boolean {
    const first = offset / this.cs;
    let again = 0;
    for (let k = first; k < first + n; k++) {
      const bit = 1 << (k & 7);
      if (this.used[k >> 3]! & bit) again++;
      this.used[k >> 3]! |= bit;
    }
    this.corruptions += again;
    return again === 0;
  }

  /** The pages of the table at `offset`, in order. */
  private async *pages(offset: number): AsyncGenerator<DataView> {
    const bytes = this.h.tableSize * this.cs;
    const page = Math.min(PAGE_BYTES, bytes);
    for (let at = 0; at < bytes; at += page) {
      throwIfAborted(this.signal, this.source.name);
      yield viewOf(await this.source.read(offset + at, page));
    }
  }

  /**
   * qemu's qed_check_l1_table: the L1 table's clusters, then each L2 table in
   * turn with the clusters it names (in that order: a data cluster that lies
   * over a later L2 table makes that table the second user).
   */
  async run(): Promise<void> {
    this.markUsed(this.h.l1TableOffset, this.h.tableSize);
    for await (const v of this.pages(this.h.l1TableOffset)) {
      for (let i = 0; i < v.byteLength; i += L.ENTRY_BYTES) {
        const entry = u64le(v, i);
        if (entry === L.UNALLOCATED) continue;
        if (!tableFits(this.h, entry)) this.corruptions++;
        // A table used twice (or lying over another) is counted once per cluster and skipped.
        else if (this.markUsed(entry, this.h.tableSize)) await this.checkL2(entry);
      }
    }
  }

  /** qemu's qed_check_l2_table: allocation statistics, then each data cluster valid and used once. */
  private async checkL2(offset: number): Promise<void> {
    let last: number | bigint = 0;
    for await (const v of this.pages(offset)) {
      for (let i = 0; i < v.byteLength; i += L.ENTRY_BYTES) {
        const entry = u64le(v, i);
        if (entry === L.UNALLOCATED || entry === L.ZERO_CLUSTER) continue;
        this.allocated++;
        // Exact past 2^53 too, where a crafted entry may lie.
        const exact = entry <= Number.MAX_SAFE_INTEGER ? entry : v.getBigUint64(i, true);
        if (last !== 0 && !follows(last, exact, this.cs)) this.fragmented++;
        last = exact;
        if (!clusterFits(this.h, entry)) this.corruptions++;
        else this.markUsed(entry, 1);
      }
    }
  }

  /** qemu's qed_check_for_leaks: clusters after the header that nothing uses. */
  leaks(): number {
    let n = 0;
    for (let k = this.h.headerSize; k < this.nclusters; k++) if (!(this.used[k >> 3]! & (1 << (k & 7)))) n++;
    return n;
  }
}

/** qemu-img check of a QED file; never writes. */
export async function checkQed(source: ByteSource, h: QedHeader, signal?: AbortSignal): Promise<CheckResult> {
  const c = new QedChecker(source, h, signal);
  await c.run();
  return {
    checkErrors: 0,
    corruptions: c.corruptions,
    leaks: c.leaks(),
    totalClusters: Math.ceil(h.imageSize / h.clusterSize),
    allocatedClusters: c.allocated,
    fragmentedClusters: c.fragmented,
    messages: [],
  };
}
