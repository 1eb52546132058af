/**
 * Writing VDI, dynamic (the default) or static (`-o static=on`), as qemu-img
 * makes them: 1 MiB blocks, a block map after the header. A dynamic image
 * gets each block that holds data appended in guest order, the others
 * marked free; a static image has every block in place from the start and
 * only the data written (the rest of the file is left sparse). The image and
 * last-snapshot UUIDs are random, as qemu's are: VirtualBox registers disks
 * by UUID, and two conversions of one source must not collide.
 */
import type { ByteSink } from '../../io/sink.ts';
import { boolOption, type BlockWriter, type CreateOptions, type FormatWriter } from '../../writer.ts';
import { OptionError, OptionValueError } from '../../errors.ts';
import { randomUuid, vdiHeader, vdiLayout, type VdiLayout } from './build.ts';
import * as L from './layout.ts';

/** Block map entries written per step (1 MiB of map). */
const MAP_WINDOW = 256 * 1024;
/** A static image's unit: every block is in place, so zero detection works like raw's 4 KiB. */
const STATIC_UNIT = 4096;

/**
 * The block map, written a window at a time as the blocks before it become
 * final (blocks arrive in guest order), so memory stays bounded whatever
 * the disk size.
 */
class BlockMap {
  private window = new Uint8Array(MAP_WINDOW * 4);
  /** Index of the first block in the window. */
  private first = 0;

  constructor(
    private readonly sink: ByteSink,
    private readonly layout: VdiLayout,
  ) {
    this.reset();
  }

  private reset(): void {
    const n = Math.min(MAP_WINDOW, this.layout.blocks - this.first);
    this.window = new Uint8Array(Math.max(0, n) * 4).fill(0xff);
  }

  async set(block: number, value: number): Promise<void> {
    while (block >= this.first + MAP_WINDOW) await this.flush();
    new DataView(this.window.buffer).setUint32((block - this.first) * 4, value, true);
  }

  /** Writes the window and moves to the next. */
  private async flush(): Promise<void> {
    if (this.window.length > 0) await this.sink.write(this.layout.offsetBmap + this.first * 4, this.window);
    this.first += MAP_WINDOW;
    this.reset();
  }

  /** Writes every entry not yet written. */
  async finish(): Promise<void> {
    while (this.first < this.layout.blocks) await this.flush();
  }
}

class DynamicWriter implements BlockWriter {
  readonly blockSize = L.BLOCK_SIZE;
  private readonly map: BlockMap;
  private allocated = 0;

  constructor(
    private readonly sink: ByteSink,
    private readonly layout: VdiLayout,
  ) {
    this.map = new BlockMap(sink, layout);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const first = offset / L.BLOCK_SIZE;
    const at = this.layout.offsetData + this.allocated * L.BLOCK_SIZE;
    for (let i = 0; i < Math.ceil(data.length / L.BLOCK_SIZE); i++) await this.map.set(first + i, this.allocated++);
    await this.sink.write(at, data);
  }

  writeCompressed(offset: number, _packed: Uint8Array, raw: Uint8Array): Promise<void> {
    return this.write(offset, raw);
  }

  /** VDI has no backing file: a free block already reads as zeros. */
  async writeZero(): Promise<void> {}

  async finish(): Promise<void> {
    await this.map.finish();
    await this.sink.write(0, header(this.layout, L.TYPE_DYNAMIC, this.allocated));
    await this.sink.commit(this.layout.offsetData + this.allocated * L.BLOCK_SIZE);
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }
}

class StaticWriter implements BlockWriter {
  readonly blockSize = STATIC_UNIT;

  constructor(
    private readonly sink: ByteSink,
    private readonly layout: VdiLayout,
  ) {}

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.sink.write(this.layout.offsetData + offset, data);
  }

  writeCompressed(offset: number, _packed: Uint8Array, raw: Uint8Array): Promise<void> {
    return this.write(offset, raw);
  }

  /** VDI has no backing file: the preallocated blocks already read as zeros. */
  async writeZero(): Promise<void> {}

  async finish(): Promise<void> {
    const { blocks, offsetBmap } = this.layout;
    // Block i lives at data block i.
    for (let first = 0; first < blocks; first += MAP_WINDOW) {
      const n = Math.min(MAP_WINDOW, blocks - first);
      const entries = new Uint8Array(n * 4);
      const v = new DataView(entries.buffer);
      for (let i = 0; i < n; i++) v.setUint32(i * 4, first + i, true);
      await this.sink.write(offsetBmap + first * 4, entries);
    }
    await this.sink.write(0, header(this.layout, L.TYPE_STATIC, blocks));
    await this.sink.commit(this.layout.offsetData + blocks * L.BLOCK_SIZE);
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }
}

function header(layout: VdiLayout, imageType: number, blocksAllocated: number): Uint8Array {
  return vdiHeader({ layout, imageType, blocksAllocated, uuidImage: randomUuid(), uuidLastSnap: randomUuid() });
}

export const vdiWriter: FormatWriter = {
  name: 'vdi',
  optionNames: ['size', 'static', 'preallocation', 'extent_size_hint', 'nocow'],
  async create(sink: ByteSink, opts: CreateOptions) {
    if (opts.backing) throw new OptionError("Backing file not supported for file format 'vdi'");
    if (opts.compress) throw new OptionError('Compression not supported for this file format');
    const isStatic = boolOption(opts, 'static') ?? false;
    const prealloc = opts.options.get('preallocation');
    // falloc only asks the host to reserve space, which changes no byte of the image.
    if (prealloc !== undefined && prealloc !== 'off' && prealloc !== 'falloc') throw new OptionValueError(`Unsupported preallocation mode: ${prealloc}`);
    const layout = vdiLayout(opts.size);
    if (layout.diskSize > L.MAX_DISK_SIZE) {
      const hex = (n: number) => n.toString(16);
      throw new OptionValueError(`Unsupported VDI image size (size is 0x${hex(layout.diskSize)}, max supported is 0x${hex(L.MAX_DISK_SIZE)})`);
    }
    return isStatic ? new StaticWriter(sink, layout) : new DynamicWriter(sink, layout);
  },
};
