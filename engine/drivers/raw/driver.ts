/**
 * raw: the guest bytes are the file. The virtual size is the file length
 * rounded up to a whole 512-byte sector, as qemu does; the rounded-up tail
 * reads as zeros. Host-file holes are invisible to the browser, so every byte
 * of the file maps as data (qemu-img can tell holes apart on a local disk).
 */
import type { ByteSource } from '../../io/source.ts';
import type { FormatDriver, Layer, LayerFacts, Mapping } from '../../driver.ts';
import { noSnapshot } from '../common.ts';

const SECTOR = 512;

/**
 * A layer whose guest bytes are a file's from offset 0: raw, and formats that
 * store the disk flat (a fixed VHD). Past the end of the file the guest reads
 * as zeros, which qemu reports as zero at a host offset.
 */
export class FlatLayer implements Layer {
  constructor(
    readonly format: string,
    readonly source: ByteSource,
    readonly size: number,
  ) {}

  async getMapping(offset: number, maxLength: number): Promise<Mapping> {
    if (offset >= this.size) return { kind: 'eof', offset, length: 0 };
    const end = Math.min(this.size, offset + maxLength);
    if (offset < this.source.size) {
      const length = Math.min(end, this.source.size) - offset;
      return { kind: 'data', offset, length, source: this.source, hostOffset: offset };
    }
    return { kind: 'zero', offset, length: end - offset, host: { source: this.source, hostOffset: offset } };
  }

  async decode(): Promise<void> {
    throw new Error(`${this.format} stores no compressed units`);
  }

  facts(): LayerFacts {
    return { dirty: false };
  }

  snapshots() {
    return [];
  }

  atSnapshot(): Promise<Layer> {
    return noSnapshot(this.source);
  }
}

export const rawDriver: FormatDriver = {
  name: 'raw',
  probe: () => 1,
  // qemu sizes a raw disk in whole sectors; the rounded-up tail reads as zeros.
  open: async (source) => new FlatLayer('raw', source, Math.ceil(source.size / SECTOR) * SECTOR),
};
