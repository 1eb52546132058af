/**
 * Writing raw: guest bytes at their own offsets. Units the pipeline finds to
 * be zero are never written, so the file is sparse there; its length is set
 * last.
 */
import type { ByteSink } from '../../io/sink.ts';
import type { BlockWriter, CreateOptions, FormatMeasurer, FormatWriter } from '../../writer.ts';
import { OptionError, OptionValueError } from '../../errors.ts';

/** qemu-img convert's default -S: zero runs of 4 KiB or more are left as holes. */
const UNIT = 4096;

class RawWriter implements BlockWriter {
  readonly blockSize = UNIT;
  constructor(
    private readonly sink: ByteSink,
    private readonly size: number,
  ) {}

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.sink.write(offset, data);
  }

  writeCompressed(offset: number, _packed: Uint8Array, raw: Uint8Array): Promise<void> {
    return this.sink.write(offset, raw);
  }

  /** A raw file has no backing file, so zeros are what an unwritten range reads as. */
  async writeZero(): Promise<void> {}

  finish(): Promise<void> {
    return this.sink.commit(this.size);
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }
}

export const rawWriter: FormatWriter = {
  name: 'raw',
  optionNames: ['size', 'preallocation'],
  async create(sink: ByteSink, opts: CreateOptions) {
    if (opts.backing) throw new OptionError("Backing file not supported for file format 'raw'");
    if (opts.compress) throw new OptionError('Compression not supported for this file format');
    const prealloc = opts.options.get('preallocation');
    if (prealloc !== undefined && prealloc !== 'off') throw new OptionValueError(`Unsupported preallocation mode '${prealloc}'`);
    return new RawWriter(sink, opts.size);
  },
};

export const rawMeasurer: FormatMeasurer = {
  name: 'raw',
  async measure(opts) {
    // qemu sizes a raw file in whole sectors.
    const size = Math.ceil(opts.size / 512) * 512;
    return { required: size, fullyAllocated: size };
  },
};
