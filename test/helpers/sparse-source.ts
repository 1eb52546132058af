/** A stand-in file for tests of huge images: any size, zeros except for its patches. */
import type { ByteSource } from '../../engine/io/source.ts';

/** A file of any size that holds zeros except where `patches` say; counts the bytes read, so a test can tell what was touched. */
export class SparseSource implements ByteSource {
  bytesRead = 0;
  constructor(
    readonly name: string,
    readonly size: number,
    private readonly patches: [number, Uint8Array][],
  ) {}

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.bytesRead += length;
    const out = into ?? new Uint8Array(length);
    out.fill(0);
    for (const [at, bytes] of this.patches) {
      const from = Math.max(at, offset);
      const to = Math.min(at + bytes.length, offset + length);
      if (from < to) out.set(bytes.subarray(from - at, to - at), from - offset);
    }
    return out;
  }
}
