/**
 * Writing VHDX: the header section (file identifier, two headers, two region
 * tables), an empty log, the BAT, the metadata region, then payload blocks.
 * - dynamic: blocks are placed in the order they are first written, each
 *   fully present; blocks never written are in the ZERO state
 *   (`block_state_zero=on`, qemu's default) or NOT_PRESENT;
 * - fixed: every block present, in order, at its own place after the metadata.
 * Only data units are written, so the file is sparse wherever the guest is
 * zero. The BAT is held and written a 64 KiB page at a time: units arrive in
 * increasing order, so a page is final once writing has moved past it.
 */
import type { ByteSink } from '../../io/sink.ts';
import { boolOption, sizeOption, type BlockWriter, type CreateOptions, type FormatWriter } from '../../writer.ts';
import { OptionError, OptionValueError } from '../../errors.ts';
import { viewOf } from '../common.ts';
import { payloadIndex } from './bat.ts';
import * as L from './layout.ts';
import {
  BAT_PAGE_ENTRIES,
  buildBatPage,
  buildFileIdentifier,
  buildHeader,
  buildMetadata,
  buildRegionTable,
  planLayout,
  randomGuid,
  setBatEntry,
  type VhdxLayout,
} from './build.ts';

/** Zero detection works on 4 KiB, qemu-img convert's default -S: zero runs inside a block stay holes. */
const UNIT = 4096;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

/** Written in the file type identifier's creator field. */
const CREATOR = 'vDisk Workbench';

/** qemu's block size for a disk when none is asked for: larger disks get larger blocks, to keep the BAT small. */
function defaultBlockSize(size: number): number {
  if (size > 32 * TiB) return 64 * MiB;
  if (size > 100 * GiB) return 32 * MiB;
  if (size > 1 * GiB) return 16 * MiB;
  return 8 * MiB;
}

/** `block_size` as qemu takes it: rounded up to whole MiB, at most 256 MiB, a power of two; 0 picks by size. */
function blockSizeOption(opts: CreateOptions, size: number): number {
  const asked = sizeOption(opts, 'block_size', 0);
  if (asked === 0) return defaultBlockSize(size);
  const bs = Math.min(L.MAX_BLOCK_SIZE, Math.ceil(asked / MiB) * MiB);
  if ((bs & (bs - 1)) !== 0) throw new OptionValueError('Block size must be a power of two');
  return bs;
}

/** `log_size` as qemu takes it: under 4 GiB, rounded up to whole MiB, not zero. */
function logSizeOption(opts: CreateOptions): number {
  const asked = sizeOption(opts, 'log_size', MiB);
  if (asked > 0xffffffff) throw new OptionValueError('Log size must be smaller than 4 GB');
  const log = Math.ceil(asked / MiB) * MiB;
  if (log === 0) throw new OptionValueError('Log size must be a multiple of 1 MB');
  return log;
}

class VhdxWriter implements BlockWriter {
  readonly blockSize = UNIT;
  /** The BAT page being filled (dynamic disks), and its number; pages before it are written. */
  private page: Uint8Array = new Uint8Array(0);
  private pageNo = -1;
  /** The last block allocated (dynamic disks: blocks come in increasing order) and where it is. */
  private block = -1;
  private blockOffset = 0;
  /** Where the next block goes. */
  private next: number;
  private readonly pageCount: number;

  constructor(
    private readonly sink: ByteSink,
    private readonly layout: VhdxLayout,
    private readonly fixed: boolean,
    /** The state of payload entries never written. */
    private readonly unwrittenState: number,
  ) {
    this.next = layout.dataOffset;
    this.pageCount = Math.ceil(layout.g.entries / BAT_PAGE_ENTRIES);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.fixed) return this.sink.write(this.layout.dataOffset + offset, data);
    const bs = this.layout.g.blockSize;
    for (let done = 0; done < data.length; ) {
      const guest = offset + done;
      const block = Math.floor(guest / bs);
      const within = guest - block * bs;
      const take = Math.min(data.length - done, bs - within);
      if (block !== this.block) await this.allocate(block);
      await this.sink.write(this.blockOffset + within, data.subarray(done, done + take));
      done += take;
    }
  }

  private async allocate(block: number): Promise<void> {
    if (block < this.block) throw new RangeError(`VHDX writer: block ${block} written after block ${this.block}`);
    this.block = block;
    this.blockOffset = this.next;
    this.next += this.layout.g.blockSize;
    const index = payloadIndex(this.layout.g, block);
    const n = Math.floor(index / BAT_PAGE_ENTRIES);
    if (n !== this.pageNo) {
      await this.flushPagesBefore(n);
      this.page = buildBatPage(this.layout, n, this.unwrittenState, false);
      this.pageNo = n;
    }
    setBatEntry(viewOf(this.page), index - n * BAT_PAGE_ENTRIES, L.PAYLOAD_BLOCK_FULLY_PRESENT, this.blockOffset);
  }

  /** Writes the page being filled and every untouched page up to page `n`. */
  private async flushPagesBefore(n: number): Promise<void> {
    if (this.pageNo >= 0) await this.writePage(this.pageNo, this.page);
    // Untouched pages of NOT_PRESENT entries are all zero: the file's holes say the same.
    const blank = this.unwrittenState === L.PAYLOAD_BLOCK_NOT_PRESENT && !this.fixed;
    for (let p = this.pageNo + 1; p < n; p++) {
      if (!blank) await this.writePage(p, buildBatPage(this.layout, p, this.unwrittenState, this.fixed));
    }
    this.pageNo = n;
  }

  private writePage(n: number, bytes: Uint8Array): Promise<void> {
    return this.sink.write(this.layout.batOffset + n * BAT_PAGE_ENTRIES * L.BAT_ENTRY_SIZE, bytes);
  }

  writeCompressed(offset: number, _packed: Uint8Array, raw: Uint8Array): Promise<void> {
    return this.write(offset, raw);
  }

  /** There is no backing file, and blocks never written read as zeros. */
  async writeZero(): Promise<void> {}

  async finish(): Promise<void> {
    const layout = this.layout;
    await this.flushPagesBefore(this.pageCount);
    const fileWriteGuid = randomGuid();
    const dataWriteGuid = randomGuid();
    await this.sink.write(0, buildFileIdentifier(CREATOR));
    for (let i = 0; i < L.HEADER_OFFSETS.length; i++) {
      await this.sink.write(L.HEADER_OFFSETS[i]!, buildHeader({ sequenceNumber: i + 1, fileWriteGuid, dataWriteGuid, layout }));
    }
    const regions = buildRegionTable(layout);
    for (const at of L.REGION_TABLE_OFFSETS) await this.sink.write(at, regions);
    await this.sink.write(layout.metadataOffset, buildMetadata(layout, this.fixed, randomGuid()));
    await this.sink.commit(this.fixed ? layout.dataOffset + layout.g.size : this.next);
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }
}

export const vhdxWriter: FormatWriter = {
  name: 'vhdx',
  optionNames: ['size', 'subformat', 'block_size', 'log_size', 'block_state_zero'],
  async create(sink: ByteSink, opts: CreateOptions) {
    if (opts.backing) throw new OptionError("Backing file not supported for file format 'vhdx'");
    if (opts.compress) throw new OptionError('Compression not supported for this file format');
    const subformat = opts.options.get('subformat');
    if (subformat !== undefined && subformat !== 'dynamic' && subformat !== 'fixed') {
      throw new OptionValueError(`Parameter 'subformat' does not accept value '${subformat}'`);
    }
    const zeroState = boolOption(opts, 'block_state_zero') ?? true;
    const size = Math.ceil(opts.size / 512) * 512;
    const logSize = logSizeOption(opts);
    const blockSize = blockSizeOption(opts, size);
    if (size > L.MAX_VIRTUAL_DISK_SIZE) throw new OptionValueError('Image size too large; max of 64TB');
    const fixed = subformat === 'fixed';
    const layout = planLayout(size, blockSize, logSize);
    const unwritten = fixed ? L.PAYLOAD_BLOCK_FULLY_PRESENT : zeroState ? L.PAYLOAD_BLOCK_ZERO : L.PAYLOAD_BLOCK_NOT_PRESENT;
    return new VhdxWriter(sink, layout, fixed, unwritten);
  },
};
