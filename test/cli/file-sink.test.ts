// The CLI's output file: writes land in the order they were made whoever
// makes them (this thread for the first MiBs, the file's write thread after),
// a caller may reuse its buffer as soon as a write returns, and a file given
// up leaves nothing behind. Judged against a model of the file in memory.
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeFileSink } from '../../cli/node-io.ts';

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'vdisk-sink-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A pattern that differs from byte to byte and from one write to the next. */
function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 17 + (i >> 12)) & 0xff;
  return out;
}

describe('NodeFileSink', () => {
  it('ends with every write in the order made, past the switch to its write thread', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ offset: fc.integer({ min: 0, max: 40 * MiB }), length: fc.integer({ min: 1, max: 5 * MiB }) }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 0, max: 8 * MiB }),
        async (writes, tail) => {
          const path = join(dir, `order-${run++}.bin`);
          const sink = await NodeFileSink.create(path);
          // A first write large enough that the rest go through the write thread.
          const all = [{ offset: 0, length: 20 * MiB }, ...writes];
          const end = Math.max(...all.map((w) => w.offset + w.length)) + tail;
          const model = new Uint8Array(end);
          for (const [i, w] of all.entries()) {
            const data = pattern(w.length, i);
            model.set(data, w.offset);
            await sink.write(w.offset, data);
            // The sink must not read the caller's buffer any more.
            data.fill(0xee);
          }
          await sink.commit(end);
          const file = readFileSync(path);
          expect(file.length).toBe(end);
          expect(Buffer.compare(file, model), 'file and model differ').toBe(0);
          rmSync(path);
        },
      ),
      { numRuns: 12 },
    );
  }, 120_000);

  it('leaves nothing behind when given up while its write thread writes', async () => {
    const folder = mkdtempSync(join(dir, 'abort-'));
    const sink = await NodeFileSink.create(join(folder, 'out.bin'));
    for (let at = 0; at < 48 * MiB; at += 8 * MiB) await sink.write(at, pattern(8 * MiB, at));
    await sink.abort();
    expect(readdirSync(folder)).toEqual([]);
  });
});
