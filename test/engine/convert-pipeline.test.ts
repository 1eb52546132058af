// The convert pipeline's walk, in process, with a writer that records what it
// is given: looking ahead, zeros that no layer reports (a raw file's) are read
// while the writer is still busy with the data before them, and not read again; a read
// error met that way is reported only when the walk gets there, after every
// unit before it was written; random layouts, read and written at random
// speeds, come out as their source, in guest order, with no whole unit of
// zeros.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { openImage, type Image } from '../../engine/image.ts';
import { convertImage } from '../../engine/ops/convert.ts';
import { ReadError } from '../../engine/errors.ts';
import { FileSetOpener } from '../../engine/io/opener.ts';
import { clampRead, type ByteSource } from '../../engine/io/source.ts';
import type { BlockWriter } from '../../engine/writer.ts';

const MiB = 2 ** 20;
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A raw file in memory that records its reads, takes a turn of the event loop for each, and fails one byte's. */
class RecordingSource implements ByteSource {
  readonly reads: { offset: number; length: number; afterRelease: boolean }[] = [];
  released = false;

  constructor(
    readonly name: string,
    private readonly bytes: Uint8Array,
    private readonly failAt = -1,
    private readonly delay: () => Promise<void> = tick,
  ) {}

  get size(): number {
    return this.bytes.length;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.reads.push({ offset, length, afterRelease: this.released });
    await this.delay();
    if (offset <= this.failAt && this.failAt < offset + length) throw new ReadError(this.name, offset, length, 'Input/output error');
    const out = into ?? new Uint8Array(length);
    const n = clampRead(this, offset, length);
    out.set(this.bytes.subarray(offset, offset + n));
    out.fill(0, n, length);
    return out;
  }

  /** Bytes of [start, end) that some read covered (overlaps counted once). */
  covered(start: number, end: number, which = (_: { afterRelease: boolean }) => true): number {
    const ranges = this.reads
      .filter(which)
      .map((r) => [Math.max(start, r.offset), Math.min(end, r.offset + r.length)] as const)
      .filter(([a, b]) => b > a)
      .sort((x, y) => x[0] - y[0]);
    let total = 0;
    let reach = start;
    for (const [a, b] of ranges) {
      if (b <= reach) continue;
      total += b - Math.max(a, reach);
      reach = b;
    }
    return total;
  }
}

/** A writer that rebuilds the disk from what it is given; its first write waits for `release`, the rest for `delay`. */
class RecordingWriter implements BlockWriter {
  readonly out: Uint8Array;
  readonly offsets: number[] = [];
  aborted = false;
  finished = false;
  /** Whole units handed over as data that hold nothing but zeros. */
  zeroUnits = 0;
  release!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.release = resolve));

  constructor(
    size: number,
    readonly blockSize: number,
    private readonly gated = false,
    private readonly delay: () => Promise<void> = async () => {},
  ) {
    this.out = new Uint8Array(size);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.gated && this.offsets.length === 0) await this.gate;
    else await this.delay();
    expect(offset % this.blockSize).toBe(0);
    this.offsets.push(offset);
    for (let at = 0; at < data.length; at += this.blockSize) {
      const unit = data.subarray(at, at + this.blockSize);
      // A short last unit of zeros is shorter than -S (4 KiB) and written, as qemu-img writes it.
      if (unit.length === this.blockSize && unit.every((b) => b === 0)) this.zeroUnits++;
    }
    this.out.set(data, offset);
  }

  async writeCompressed(): Promise<void> {
    throw new Error('not a compressing writer');
  }

  async writeZero(): Promise<void> {
    throw new Error('no backing file, so no zero units');
  }

  async finish(): Promise<void> {
    this.finished = true;
  }

  async abort(): Promise<void> {
    this.aborted = true;
  }
}

const rawImage = (source: ByteSource): Promise<Image> => openImage(source, { opener: new FileSetOpener(new Map()), format: 'raw' });

/** `data` MiB of a pattern with no zero byte, then `zeros` MiB of zeros. */
function dataThenZeros(data: number, zeros: number): Uint8Array {
  const bytes = new Uint8Array((data + zeros) * MiB);
  for (let i = 0; i < data * MiB; i++) bytes[i] = (i % 251) + 1;
  return bytes;
}

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  for (const start = Date.now(); Date.now() - start < timeoutMs; await new Promise((r) => setTimeout(r, 5))) if (condition()) return true;
  return condition();
}

describe('convert pipeline', () => {
  // Looking ahead: 32 MiB of data is more than the pipeline's buffers hold, so they all wait for
  // the writer. In turn: after one chunk of data, each chunk of zeros frees its buffer for the next.
  it.each([
    ['looking ahead', 32, true],
    ['in turn', 8, false],
  ])('reads the zeros after data while the writer is still busy with the data, and not again (%s)', async (_, dataMiB, lookAhead) => {
    const bytes = dataThenZeros(dataMiB, 64);
    const [zerosFrom, end] = [dataMiB * MiB, bytes.length];
    const source = new RecordingSource('data-then-zeros.raw', bytes);
    const writer = new RecordingWriter(bytes.length, 64 * 1024, true);
    const done = convertImage(await rawImage(source), writer, { lookAhead });
    const readAhead = await until(() => source.covered(zerosFrom, end) === end - zerosFrom, 10_000);
    expect(writer.offsets).toEqual([]);
    expect(readAhead, `zeros read while the first write waited: ${source.covered(zerosFrom, end)} of ${end - zerosFrom} bytes`).toBe(true);
    source.released = true;
    writer.release();
    await done;
    expect(source.covered(zerosFrom, end, (r) => r.afterRelease)).toBe(0);
    expect(writer.finished).toBe(true);
    expect(Buffer.compare(writer.out, bytes)).toBe(0);
    expect(Math.max(...writer.offsets)).toBeLessThan(zerosFrom);
  });

  it('reports a read error among zeros read ahead only when the walk gets there, after the data before it is written', async () => {
    const bytes = dataThenZeros(32, 64);
    const failAt = 70 * MiB + 12345;
    const source = new RecordingSource('failing.raw', bytes, failAt);
    const writer = new RecordingWriter(bytes.length, 64 * 1024, true);
    const done = convertImage(await rawImage(source), writer, { lookAhead: true }).then(
      () => undefined,
      (e: unknown) => e,
    );
    // The failing read is made ahead, while the first write waits, and must not end the walk there.
    expect(await until(() => source.covered(failAt, failAt + 1) === 1, 10_000)).toBe(true);
    expect(writer.offsets).toEqual([]);
    writer.release();
    const error = await done;
    expect(error).toBeInstanceOf(ReadError);
    const { offset } = error as ReadError;
    expect(offset).toBeLessThanOrEqual(failAt);
    expect(offset).toBeGreaterThan(failAt - 8 * MiB);
    expect(writer.aborted).toBe(true);
    expect(writer.finished).toBe(false);
    expect(Buffer.compare(writer.out.subarray(0, 32 * MiB), bytes.subarray(0, 32 * MiB))).toBe(0);
  });

  it('writes any layout as its source, in guest order, whatever the speed of reads and writes', async () => {
    const pause = (n: number) => (n === 0 ? async () => {} : n === 1 ? tick : () => new Promise<void>((r) => setTimeout(r, 1)));
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ mib: fc.integer({ min: 1, max: 12 }), kind: fc.constantFrom('data', 'zero', 'sparse') }), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 0, max: 4095 }),
        fc.constantFrom(4096, 65536, MiB, 4 * MiB),
        fc.integer({ min: 0, max: 2 }),
        fc.integer({ min: 0, max: 2 }),
        fc.boolean(),
        async (segments, tail, unit, readSpeed, writeSpeed, lookAhead) => {
          const size = segments.reduce((n, s) => n + s.mib * MiB, 0) + tail;
          const bytes = new Uint8Array(size);
          let at = 0;
          for (const [i, s] of segments.entries()) {
            const seg = bytes.subarray(at, at + s.mib * MiB);
            if (s.kind === 'data') for (let j = 0; j < seg.length; j++) seg[j] = (j * 7 + i) & 0xff;
            // Mostly zeros, a byte every 1.5 MiB: units of zeros between units of data.
            if (s.kind === 'sparse') for (let j = 3 * 1024; j < seg.length; j += 1536 * 1024) seg[j] = i + 1;
            at += seg.length;
          }
          const source = new RecordingSource('layout.raw', bytes, -1, pause(readSpeed));
          const image = await rawImage(source);
          // A raw disk is its file rounded up to whole sectors, as qemu sees it.
          expect(image.size).toBe(Math.ceil(size / 512) * 512);
          const writer = new RecordingWriter(image.size, unit, false, pause(writeSpeed));
          await convertImage(image, writer, { lookAhead });
          expect(writer.finished).toBe(true);
          expect(writer.offsets).toEqual([...writer.offsets].sort((a, b) => a - b));
          expect(new Set(writer.offsets).size).toBe(writer.offsets.length);
          expect(writer.zeroUnits).toBe(0);
          expect(Buffer.compare(writer.out.subarray(0, size), bytes)).toBe(0);
          expect(writer.out.subarray(size).every((b) => b === 0)).toBe(true);
        },
      ),
      { numRuns: 25 },
    );
  }, 120_000);
});
