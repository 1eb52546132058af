// BlobSource: every read returns the file's bytes (zeros past its end)
// whether it is served directly or from the blocks that large reads go
// through, and a sequential scan of large reads costs one Blob read per block.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { BlobSource } from '../../engine/io/source.ts';
import { ReadError } from '../../engine/errors.ts';

const MiB = 1024 * 1024;

/** A Blob that counts the reads made of it. */
function countingBlob(bytes: Uint8Array<ArrayBuffer>): { blob: Blob; reads: () => number } {
  let reads = 0;
  const real = new Blob([bytes]);
  const blob = {
    size: real.size,
    slice(start?: number, end?: number) {
      const part = real.slice(start, end);
      return { arrayBuffer: () => (reads++, part.arrayBuffer()) };
    },
  } as unknown as Blob;
  return { blob, reads: () => reads };
}

const SIZE = 21 * MiB + 12345;
const bytes = new Uint8Array(SIZE);
for (let i = 0; i < SIZE; i += 4096) bytes[i] = (i / 4096) & 0xff;
bytes[SIZE - 1] = 0xee;

describe('BlobSource', () => {
  test('reads equal the file, small and large, inside and past its end', async () => {
    const src = new BlobSource('f', new Blob([bytes]));
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: SIZE + MiB }), fc.integer({ min: 0, max: 9 * MiB }), async (offset, length) => {
        const got = await src.read(offset, length);
        const want = new Uint8Array(length);
        want.set(bytes.subarray(Math.min(offset, SIZE), Math.min(offset + length, SIZE)));
        expect(Buffer.compare(got, want)).toBe(0);
      }),
      { numRuns: 60 },
    );
  });

  test('a sequential scan in 2 MiB reads makes one Blob read per 8 MiB block', async () => {
    const { blob, reads } = countingBlob(bytes);
    const src = new BlobSource('f', blob);
    const out = new Uint8Array(2 * MiB);
    for (let off = 0; off < SIZE; off += out.length) {
      await src.read(off, out.length, out);
      const n = Math.min(out.length, SIZE - off);
      expect(Buffer.compare(out.subarray(0, n), bytes.subarray(off, off + n))).toBe(0);
    }
    expect(reads()).toBe(Math.ceil(SIZE / (8 * MiB)));
  });

  test('a failed read is a ReadError naming the file, and is tried again next time', async () => {
    let fail = true;
    const real = new Blob([bytes]);
    const blob = {
      size: real.size,
      slice: (s?: number, e?: number) => ({ arrayBuffer: () => (fail ? Promise.reject(new Error('gone')) : real.slice(s, e).arrayBuffer()) }),
    } as unknown as Blob;
    const src = new BlobSource('disk.img', blob);
    const err = await src.read(0, MiB).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReadError);
    expect((err as ReadError).file).toBe('disk.img');
    fail = false;
    expect(Buffer.compare(await src.read(0, MiB), bytes.subarray(0, MiB))).toBe(0);
  });
});
