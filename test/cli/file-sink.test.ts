// The CLI's output file: writes land in the order they were made whoever
// makes them (this thread for the first MiBs, the file's write thread after),
// a caller may reuse its buffer as soon as a write returns (also when the
// thread writes it from the kernels' shared memory, uncopied), and a file given
// up leaves nothing behind; one dropped unfinished does not keep the process
// alive. Writes are judged against a model of the file in memory.
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { NodeFileSink } from '../../cli/node-io.ts';
import { loadWasmKernels } from '../../engine/kernels/index.ts';
import { run } from '../helpers/run.ts';

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
  it('ends with every write in the order made, past the switch to its write thread, copied or written from the kernels\' shared memory', async () => {
    const wasm = (name: string) => readFileSync(`build/wasm/kernels-${name}.wasm`);
    const k = await loadWasmKernels(wasm('simd'), wasm('scalar'), { shared: wasm('shared') });
    expect(k.shared).toBeInstanceOf(SharedArrayBuffer);
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ offset: fc.integer({ min: 0, max: 40 * MiB }), length: fc.integer({ min: 1, max: 7 * MiB }), inShared: fc.boolean() }),
          { minLength: 1, maxLength: 8 },
        ),
        fc.integer({ min: 0, max: 8 * MiB }),
        fc.boolean(),
        async (writes, tail, firstInShared) => {
          const path = join(dir, `order-${run++}.bin`);
          const sink = await NodeFileSink.create(path);
          // A first write large enough that the rest go through the write thread.
          const all = [{ offset: 0, length: 20 * MiB, inShared: firstInShared }, ...writes];
          const end = Math.max(...all.map((w) => w.offset + w.length)) + tail;
          const model = new Uint8Array(end);
          for (const [i, w] of all.entries()) {
            const data = w.inShared ? k.alloc(w.length) : new Uint8Array(w.length);
            expect(data.buffer instanceof SharedArrayBuffer).toBe(w.inShared);
            data.set(pattern(w.length, i));
            model.set(data, w.offset);
            await sink.write(w.offset, data);
            // The sink must not read the caller's buffer any more: it is reused at once, as the
            // convert pipeline reuses its buffers.
            data.fill(0xee);
            k.free(data);
          }
          await sink.commit(end);
          const file = readFileSync(path);
          expect(file.length).toBe(end);
          expect(Buffer.compare(file, model), 'file and model differ').toBe(0);
          rmSync(path);
        },
      ),
      { numRuns: 16 },
    );
  }, 120_000);

  it('leaves nothing behind when given up while its write thread writes', async () => {
    const folder = mkdtempSync(join(dir, 'abort-'));
    const sink = await NodeFileSink.create(join(folder, 'out.bin'));
    for (let at = 0; at < 48 * MiB; at += 8 * MiB) await sink.write(at, pattern(8 * MiB, at));
    await sink.abort();
    expect(readdirSync(folder)).toEqual([]);
  });

  it('does not keep the process alive when dropped with its write thread idle', async () => {
    // A conversion that fails without giving its file up must still end: the script hands
    // 48 MiB over (past the switch to the write thread) and returns without commit or abort.
    const script = join(dir, 'dropped.ts');
    writeFileSync(
      script,
      `import { NodeFileSink } from ${JSON.stringify(resolve('cli/node-io.ts'))};
      const sink = await NodeFileSink.create(${JSON.stringify(join(dir, 'dropped.bin'))});
      for (let at = 0; at < 48 * 2 ** 20; at += 8 * 2 ** 20) await sink.write(at, new Uint8Array(8 * 2 ** 20).fill(7));
      console.log('handed over');`,
    );
    const bundle = join(dir, 'dropped.mjs');
    await build({ entryPoints: [script], outfile: bundle, bundle: true, platform: 'node', format: 'esm', logLevel: 'silent' });
    const r = run(process.execPath, [bundle], { timeoutMs: 20_000 });
    expect({ status: r.status, signal: r.signal, stdout: r.stdout }).toEqual({ status: 0, signal: null, stdout: 'handed over\n' });
  }, 30_000);
});
