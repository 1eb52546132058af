/**
 * Writing VHD (qemu's `vpc`), as qemu-img creates and fills it:
 * - dynamic: footer copy, dynamic disk header, BAT, then 2 MiB blocks in the
 *   order they are first written, each a sector bitmap (all ones, as qemu
 *   writes it) and the block's data, then the footer;
 * - fixed: the guest bytes at their own offsets, then the footer.
 * Only data units are written, so the file is sparse where the guest is zero.
 * `-o azure=on` is the preset Azure asks for: fixed, the size rounded up to a
 * whole MiB, and force_size so that no CHS rounding changes it.
 */
import type { ByteSink } from '../../io/sink.ts';
import { boolOption, type BlockWriter, type CreateOptions, type FormatWriter } from '../../writer.ts';
import { OptionError, OptionValueError } from '../../errors.ts';
import * as L from './layout.ts';
import {
  BAT_OFFSET,
  DEFAULT_BLOCK_SIZE,
  batBytes,
  buildBat,
  buildDynHeader,
  buildFooter,
  randomUuid,
  tableEntries,
  vhdSize,
  vhdTimestamp,
  type VhdSize,
} from './build.ts';

/** Zero detection works on 4 KiB, qemu-img convert's default -S: zero runs inside a block stay holes. */
const UNIT = 4096;
const MiB = 1024 * 1024;

class FixedWriter implements BlockWriter {
  readonly blockSize = UNIT;
  constructor(
    private readonly sink: ByteSink,
    private readonly footer: Uint8Array,
    private readonly size: number,
  ) {}

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.sink.write(offset, data);
  }

  writeCompressed(offset: number, _packed: Uint8Array, raw: Uint8Array): Promise<void> {
    return this.write(offset, raw);
  }

  /** There is no backing file, and unwritten sectors of a new file read as zeros. */
  async writeZero(): Promise<void> {}

  async finish(): Promise<void> {
    await this.sink.write(this.size, this.footer);
    await this.sink.commit(this.size + L.FOOTER_SIZE);
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }
}

class DynamicWriter implements BlockWriter {
  readonly blockSize = UNIT;
  private readonly bat: Uint32Array;
  private readonly bitmap: Uint8Array;
  /** The next free sector, where the next block goes. */
  private next: number;

  constructor(
    private readonly sink: ByteSink,
    private readonly footer: Uint8Array,
    size: VhdSize,
  ) {
    this.bat = new Uint32Array(tableEntries(size.sectors, DEFAULT_BLOCK_SIZE)).fill(L.BAT_UNUSED);
    // Every sector of a written block is marked present: sectors the pipeline skipped are holes that read as zeros.
    this.bitmap = new Uint8Array(L.bitmapBytes(DEFAULT_BLOCK_SIZE)).fill(0xff);
    this.next = (BAT_OFFSET + batBytes(this.bat.length)) / L.SECTOR;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    for (let done = 0; done < data.length; ) {
      const guest = offset + done;
      const block = Math.floor(guest / DEFAULT_BLOCK_SIZE);
      const within = guest - block * DEFAULT_BLOCK_SIZE;
      const take = Math.min(data.length - done, DEFAULT_BLOCK_SIZE - within);
      const start = await this.blockStart(block);
      await this.sink.write(start + within, data.subarray(done, done + take));
      done += take;
    }
  }

  /** The file offset of a block's data, allocating the block (and writing its bitmap) on first use. */
  private async blockStart(block: number): Promise<number> {
    let sector = this.bat[block]!;
    if (sector === L.BAT_UNUSED) {
      sector = this.next;
      this.bat[block] = sector;
      this.next += (this.bitmap.length + DEFAULT_BLOCK_SIZE) / L.SECTOR;
      await this.sink.write(sector * L.SECTOR, this.bitmap);
    }
    return sector * L.SECTOR + this.bitmap.length;
  }

  writeCompressed(offset: number, _packed: Uint8Array, raw: Uint8Array): Promise<void> {
    return this.write(offset, raw);
  }

  /** There is no backing file, and blocks never written read as zeros. */
  async writeZero(): Promise<void> {}

  async finish(): Promise<void> {
    const end = this.next * L.SECTOR;
    await this.sink.write(0, this.footer);
    await this.sink.write(L.FOOTER_SIZE, buildDynHeader(this.bat.length, DEFAULT_BLOCK_SIZE));
    await this.sink.write(BAT_OFFSET, buildBat(this.bat));
    await this.sink.write(end, this.footer);
    await this.sink.commit(end + L.FOOTER_SIZE);
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }
}

export const vpcWriter: FormatWriter = {
  name: 'vpc',
  optionNames: ['size', 'subformat', 'force_size', 'azure'],
  async create(sink: ByteSink, opts: CreateOptions) {
    if (opts.backing) throw new OptionError("Backing file not supported for file format 'vpc'");
    if (opts.compress) throw new OptionError('Compression not supported for this file format');
    const subformat = opts.options.get('subformat');
    if (subformat !== undefined && subformat !== 'dynamic' && subformat !== 'fixed') {
      throw new OptionValueError(`Parameter 'subformat' does not accept value '${subformat}'`);
    }
    let fixed = subformat === 'fixed';
    let forceSize = boolOption(opts, 'force_size') ?? false;
    let bytes = opts.size;
    if (boolOption(opts, 'azure')) {
      // Azure takes fixed disks whose virtual size is a whole number of MiB, exactly.
      if (subformat === 'dynamic') throw new OptionValueError("Parameter 'azure' needs subformat=fixed");
      if (boolOption(opts, 'force_size') === false) throw new OptionValueError("Parameter 'azure' needs force_size=on");
      fixed = true;
      forceSize = true;
      bytes = Math.ceil(bytes / MiB) * MiB;
    }
    const size = vhdSize(bytes, forceSize);
    if (!size) throw new OptionValueError("The image size is too large for file format 'vpc'");
    const footer = buildFooter({
      diskType: fixed ? L.TYPE_FIXED : L.TYPE_DYNAMIC,
      size,
      timestamp: vhdTimestamp(new Date()),
      uniqueId: randomUuid(),
    });
    return fixed ? new FixedWriter(sink, footer, size.sectors * L.SECTOR) : new DynamicWriter(sink, footer, size);
  },
};
