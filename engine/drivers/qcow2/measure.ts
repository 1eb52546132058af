/**
 * `measure -O qcow2`: qemu-img 7.2's arithmetic. "fully-allocated" is the
 * file with every cluster of the disk present: one header cluster, whole L2
 * tables for the disk, the L1 table in whole clusters, the refcount blocks
 * and table that count all of these (themselves included), and the data.
 * "required" is that minus the data clusters nothing is written to: only the
 * clusters the source's data touches count (all of them over a backing file,
 * since the backing file may share none of them).
 */
import type { DataRange, FormatMeasurer, MeasureOptions, Measurement } from '../../writer.ts';
import { OptionError } from '../../errors.ts';
import { parseQcow2Options } from './options.ts';
import * as L from './layout.ts';

const L1_ENTRY = 8;
const REFTABLE_ENTRY = 8;

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

/**
 * Clusters of refcount blocks and table needed to count `clusters` clusters
 * plus themselves: the smallest fixed point, found by iterating.
 */
export function refcountMetadataClusters(clusters: number, clusterSize: number, refcountOrder: number): number {
  const perBlock = (clusterSize * 8) / 2 ** refcountOrder;
  const blocksPerTableCluster = clusterSize / REFTABLE_ENTRY;
  let blocks = 0;
  let table = 0;
  for (;;) {
    const nextBlocks = Math.ceil((clusters + blocks + table) / perBlock);
    const nextTable = Math.ceil(nextBlocks / blocksPerTableCluster);
    if (nextBlocks === blocks && nextTable === table) return blocks + table;
    blocks = nextBlocks;
    table = nextTable;
  }
}

/** The file size with every cluster of a disk of `virtualSize` bytes allocated (qemu's qcow2_calc_prealloc_size). */
export function fullyAllocatedSize(virtualSize: number, clusterBits: number, refcountOrder: number, extendedL2: boolean): number {
  const cs = 2 ** clusterBits;
  const l2Entry = extendedL2 ? 16 : 8;
  const aligned = roundUp(virtualSize, cs);
  const l2Entries = roundUp(aligned / cs, cs / l2Entry);
  const l1Entries = roundUp((l2Entries * l2Entry) / cs, cs / L1_ENTRY);
  const meta = cs + l2Entries * l2Entry + l1Entries * L1_ENTRY;
  return meta + refcountMetadataClusters((meta + aligned) / cs, cs, refcountOrder) * cs + aligned;
}

/** Bytes of the clusters that the data ranges touch, each cluster once. */
async function dataClusterBytes(data: AsyncIterable<DataRange>, cs: number): Promise<number> {
  let bytes = 0;
  // End of the last cluster counted: the next range may start inside it.
  let counted = 0;
  for await (const r of data) {
    const end = r.start + r.length;
    if (r.length === 0 || end <= counted) continue;
    const start = Math.max(r.start, counted) - (Math.max(r.start, counted) % cs);
    counted = roundUp(end, cs);
    bytes += counted - start;
  }
  return bytes;
}

export const qcow2Measurer: FormatMeasurer = {
  name: 'qcow2',
  async measure(opts: MeasureOptions, data: AsyncIterable<DataRange>): Promise<Measurement> {
    const p = parseQcow2Options(opts, 'measure');
    const cs = 2 ** p.clusterBits;
    const virtualSize = roundUp(opts.size, cs);
    const l2Tables = Math.ceil(virtualSize / cs / (cs / (p.extendedL2 ? 16 : 8)));
    if (l2Tables * L1_ENTRY > L.MAX_L1_BYTES) throw new OptionError('The image size is too large (try using a larger cluster size)');
    const fullyAllocated = fullyAllocatedSize(virtualSize, p.clusterBits, p.refcountOrder, p.extendedL2);
    let dataBytes = await dataClusterBytes(data, cs);
    const hasSource = opts.source !== undefined;
    // Over a backing file every cluster may differ from it, so all count.
    if (hasSource && (opts.backing || opts.options.has('backing_file'))) dataBytes = virtualSize;
    const full = p.preallocation === 'full' || p.preallocation === 'falloc';
    const required = full ? fullyAllocated : fullyAllocated - virtualSize + dataBytes;
    // Persistent bitmaps come from a qcow2 source, and only a version 3 target holds them (none are read yet: 0).
    return p.version === 3 && opts.source?.format === 'qcow2' ? { required, fullyAllocated, bitmaps: 0 } : { required, fullyAllocated };
  },
};
