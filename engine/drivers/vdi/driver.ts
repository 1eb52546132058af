/**
 * The VDI driver: VirtualBox images, dynamic and static, with the block map
 * that sends each 1 MiB guest block to a data block or marks it free or zero.
 * VDI has no backing files that qemu follows (differencing images are refused,
 * as qemu does); a free block reads as zeros and is reported as zero, which is
 * how qemu answers for it.
 */
import { ImageFormatError } from '../../errors.ts';
import type { ByteSource } from '../../io/source.ts';
import type { CheckResult, FormatDriver, Layer, LayerFacts, Mapping, OpenContext } from '../../driver.ts';
import { BlockTable } from '../block-table.ts';
import { noSnapshot, viewOf } from '../common.ts';
import { parseHeader, type VdiHeader } from './header.ts';
import { checkVdi } from './check.ts';
import * as L from './layout.ts';

const STRUCTURE = 'VDI block table';
/** Entries a checked block map may have beyond what the file holds (they read as zeros). */
const CHECK_SLACK = 2 ** 26;
const hex = (n: number) => '0x' + n.toString(16);

const isAllocated = (entry: number) => entry < L.BLOCK_ZERO;

class VdiLayer implements Layer {
  readonly format = 'vdi';
  readonly size: number;

  constructor(
    readonly source: ByteSource,
    private readonly header: VdiHeader,
    private readonly table: BlockTable,
  ) {
    this.size = header.diskSize;
  }

  async getMapping(offset: number, maxLength: number): Promise<Mapping> {
    if (offset >= this.size) return { kind: 'eof', offset, length: 0 };
    const bs = this.header.blockSize;
    const end = Math.min(this.size, offset + maxLength);
    const first = Math.floor(offset / bs);
    let firstEntry = 0;
    // One answer for a run of blocks that are all unallocated, or allocated back to back.
    const stop = await this.table.walk(first, Math.ceil(end / bs), (i, entry) => {
      if (i === first) {
        firstEntry = entry;
        return true;
      }
      return isAllocated(firstEntry) ? entry === firstEntry + (i - first) : !isAllocated(entry);
    });
    const length = Math.min(end, stop * bs) - offset;
    if (!isAllocated(firstEntry)) return { kind: 'zero', offset, length };
    const hostOffset = this.header.offsetData + firstEntry * bs + (offset % bs);
    return { kind: 'data', offset, length, source: this.source, hostOffset };
  }

  async decode(): Promise<void> {
    throw new Error('vdi has no compressed units');
  }

  facts(): LayerFacts {
    return { clusterSize: this.header.blockSize, dirty: false };
  }

  snapshots() {
    return [];
  }

  atSnapshot(): Promise<Layer> {
    return noSnapshot(this.source);
  }

  /** qemu-img check's findings, on the image as qemu reads it (see `checkTable`). */
  check(signal?: AbortSignal): Promise<CheckResult> {
    return checkVdi(this.table, this.header, this.source.name, signal);
  }
}

/**
 * The block map must lie inside the file, and so must every block it uses:
 * qemu reads what is missing as zeros, which hides a truncated or damaged
 * image; this engine refuses it, naming the entry. Opened for a check, the
 * image is read as qemu reads it, so that the check finds what qemu-img's
 * does; only a map longer than the file could hold by CHECK_SLACK entries is
 * refused, as walking it would take time no file bounds.
 */
async function checkTable(source: ByteSource, h: VdiHeader, forCheck: boolean): Promise<BlockTable> {
  const bytes = h.blocksInImage * 4;
  if (forCheck ? h.blocksInImage > source.size / 4 + CHECK_SLACK : h.offsetBmap + bytes > source.size) {
    throw new ImageFormatError(
      source.name,
      STRUCTURE,
      h.offsetBmap,
      `block table of ${bytes} bytes (${h.blocksInImage} blocks) runs past the end of the file (${source.size} bytes)`,
    );
  }
  const table = new BlockTable(source, h.offsetBmap, h.blocksInImage);
  if (forCheck) return table;
  const blocks = Math.ceil(h.diskSize / h.blockSize);
  let bad: { index: number; entry: number } | undefined;
  await table.walk(0, blocks, (index, entry) => {
    if (isAllocated(entry) && h.offsetData + (entry + 1) * h.blockSize > source.size) bad = { index, entry };
    return bad === undefined;
  });
  if (bad) {
    const at = h.offsetData + bad.entry * h.blockSize;
    throw new ImageFormatError(
      source.name,
      STRUCTURE,
      h.offsetBmap + bad.index * 4,
      `block ${bad.index} is mapped to data block ${bad.entry} at ${hex(at)}, which runs past the end of the file (${source.size} bytes)`,
    );
  }
  return table;
}

async function open(source: ByteSource, ctx: OpenContext): Promise<Layer> {
  const header = parseHeader(await source.read(0, L.HEADER_BYTES), source.name);
  const table = await checkTable(source, header, ctx.forCheck ?? false);
  return new VdiLayer(source, header, table);
}

export const vdiDriver: FormatDriver = {
  name: 'vdi',
  // qemu probes a zero-padded buffer, so a file shorter than the header can still be a VDI.
  probe: (head) => (head.length >= L.H.signature + 4 && viewOf(head).getUint32(L.H.signature, true) === L.SIGNATURE ? 100 : 0),
  open,
};
