// Unit and property tests of engine pieces that need no image: the bounded
// cache, the WebAssembly kernels against their TypeScript twins, xxHash32,
// the bounded inflate, and argument parsing.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { deflateRawSync } from 'node:zlib';
import { LruCache } from '../../engine/cache.ts';
import { isZeroTs } from '../../engine/kernels/zero.ts';
import { firstDifferenceTs } from '../../engine/kernels/compare.ts';
import { Xxh32 } from '../../engine/kernels/xxh32.ts';
import { loadWasmKernels } from '../../engine/kernels/index.ts';
import { CodecError, inflateRawInto } from '../../engine/codecs/deflate.ts';
import { parseArgs, parseSize, UsageError } from '../../cli/args.ts';

describe('LruCache', () => {
  it('never holds more than its budget and evicts the least recently used', () => {
    const c = new LruCache<number, Uint8Array>(1000, (v) => v.length);
    for (let i = 0; i < 50; i++) {
      c.set(i, new Uint8Array(300));
      expect(c.weight).toBeLessThanOrEqual(1000);
    }
    expect(c.get(49)).toBeDefined();
    expect(c.get(0)).toBeUndefined();
  });

  it('shares one load between concurrent callers', async () => {
    const c = new LruCache<string, Uint8Array>(1 << 20, (v) => v.length);
    let loads = 0;
    const load = async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 5));
      return new Uint8Array(8);
    };
    const [a, b] = await Promise.all([c.getOrLoad('k', load), c.getOrLoad('k', load)]);
    expect(a).toBe(b);
    expect(loads).toBe(1);
  });
});

describe('zero kernel', () => {
  const simd = readFileSync('build/wasm/kernels-simd.wasm');
  const scalar = readFileSync('build/wasm/kernels-scalar.wasm');
  const shared = readFileSync('build/wasm/kernels-shared.wasm');

  it('with shared memory, buffers live in the memory the kernels share', async () => {
    const k = await loadWasmKernels(simd, scalar, { shared });
    expect(k.shared).toBeInstanceOf(SharedArrayBuffer);
    const buf = k.alloc(4096);
    expect(buf.buffer).toBe(k.shared);
    k.free(buf);
    expect((await loadWasmKernels(simd, scalar)).shared).toBeUndefined();
  });

  it.each([
    ['plain', {}],
    ['shared', { shared }],
  ])('the WebAssembly build agrees with the TypeScript twin (%s memory)', async (_, options) => {
    const k = await loadWasmKernels(simd, scalar, options);
    expect(k.name).toMatch(/^wasm/);
    const buf = k.alloc(1 << 16);
    fc.assert(
      fc.property(fc.nat(1 << 16), fc.nat(1 << 16), fc.integer({ min: 0, max: 255 }), fc.nat(1 << 16), (start, len, byte, at) => {
        const view = buf.subarray(Math.min(start, buf.length), Math.min(buf.length, start + len));
        view.fill(0);
        if (view.length > 0) view[at % view.length] = byte;
        expect(k.isZero(view)).toBe(isZeroTs(view));
        expect(isZeroTs(view)).toBe(byte === 0 || view.length === 0);
      }),
      { numRuns: 300 },
    );
    k.free(buf);
  });
});

describe('bounded inflate', () => {
  const plain = new Uint8Array(128 * 1024).map((_, i) => (i * 7) % 251);
  const packed = deflateRawSync(plain);

  it('decodes into exactly the unit size', () => {
    const out = new Uint8Array(plain.length);
    inflateRawInto(packed, out);
    expect(Buffer.compare(out, plain)).toBe(0);
  });

  it('stops at the bound: a longer stream fills the unit with its start, as qemu accepts', () => {
    const out = new Uint8Array(64 * 1024);
    inflateRawInto(packed, out);
    expect(Buffer.compare(out, plain.subarray(0, out.length))).toBe(0);
  });

  it('refuses a stream that ends before filling the unit', () => {
    expect(() => inflateRawInto(packed, new Uint8Array(256 * 1024))).toThrow(CodecError);
  });

  it('refuses garbage', () => {
    expect(() => inflateRawInto(new Uint8Array([0xff, 0xff, 0xff, 0xff]), new Uint8Array(512))).toThrow(CodecError);
  });
});

describe('command-line parsing', () => {
  const spec = { short: 'f:O:pc', long: { output: { arg: true, key: 'output' }, 'backing-chain': { arg: false, key: 'chain' } } };

  it('follows getopt_long: clusters, attached values, options after file names', () => {
    const p = parseArgs(['-pO', 'raw', 'a.img', '--output=json', '-fqcow2', 'b.img', '--backing-chain'], spec);
    expect(p.args).toEqual(['a.img', 'b.img']);
    expect(p.opts).toEqual([
      ['p', true],
      ['O', 'raw'],
      ['output', 'json'],
      ['f', 'qcow2'],
      ['chain', true],
    ]);
  });

  it('rejects unknown options and missing values', () => {
    expect(() => parseArgs(['--nope'], spec)).toThrow(UsageError);
    expect(() => parseArgs(['-z'], spec)).toThrow(UsageError);
    expect(() => parseArgs(['-f'], spec)).toThrow(UsageError);
  });

  it('reads sizes in qemu-img syntax', () => {
    expect(parseSize('4k')).toBe(4096);
    expect(parseSize('10G')).toBe(10 * 2 ** 30);
    expect(parseSize('1T')).toBe(2 ** 40);
    expect(parseSize('512')).toBe(512);
    expect(() => parseSize('ten')).toThrow(UsageError);
  });
});

describe('first-difference kernel', () => {
  it('the WebAssembly build agrees with the TypeScript twin', async () => {
    const k = await loadWasmKernels(readFileSync('build/wasm/kernels-simd.wasm'), readFileSync('build/wasm/kernels-scalar.wasm'));
    const a = k.alloc(1 << 16);
    const b = k.alloc(1 << 16);
    fc.assert(
      fc.property(fc.nat(1 << 16), fc.nat(1 << 16), fc.nat(1 << 16), fc.boolean(), (start, len, at, differ) => {
        const n = Math.min(len, a.length - Math.min(start, a.length));
        const x = a.subarray(start % a.length, (start % a.length) + n);
        const y = b.subarray(start % b.length, (start % b.length) + n);
        x.fill(7);
        y.fill(7);
        if (differ && n > 0) y[at % n] = 9;
        const expected = differ && n > 0 ? at % n : -1;
        expect(firstDifferenceTs(x, y)).toBe(expected);
        expect(k.firstDifference(x, y)).toBe(expected);
      }),
      { numRuns: 300 },
    );
    k.free(a);
    k.free(b);
  });
});

describe('xxHash32', () => {
  const hash = (bytes: Uint8Array) => new Xxh32().update(bytes).digest();

  it('gives the published values', () => {
    const text = (s: string) => new TextEncoder().encode(s);
    expect(hash(text(''))).toBe(0x02cc5d05);
    expect(hash(text('a'))).toBe(0x550d7456);
    expect(hash(text('abc'))).toBe(0x32d153ff);
    expect(hash(text('Nobody inspects the spammish repetition'))).toBe(0xe2293b2f);
  });

  it('is the same however the input is split', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(300), { maxLength: 6 }), (data, cuts) => {
        const h = new Xxh32();
        let from = 0;
        for (const c of [...cuts].sort((x, y) => x - y)) {
          const to = Math.min(c, data.length);
          if (to < from) continue;
          h.update(data.subarray(from, to));
          from = to;
        }
        h.update(data.subarray(from));
        expect(h.digest()).toBe(hash(data));
      }),
    );
  });
});

