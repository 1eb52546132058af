// The WebAssembly deflate decoder (asm/inflate/, both builds) against Node's
// zlib on random and compressible data at every level and strategy; the output
// bound; truncated, corrupted and hand-made streams (one for every error);
// qemu itself (qemu-io reading clusters whose streams were put there by hand
// or damaged at random, so that where a stream is cut, overruns the cluster
// or breaks just after it, vdisk succeeds or fails exactly where qemu does);
// and real compressed images from qemu-img, converted by vdisk.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants, deflateRawSync, deflateSync, inflateRawSync } from 'node:zlib';
import { instantiateInflate, loadWasmInflate, wasmInflater, type Inflater } from '../../engine/kernels/inflate.ts';
import { CodecError, inflateRawInto, inflateZlibInto } from '../../engine/codecs/deflate.ts';
import { MemorySource } from '../../engine/io/source.ts';
import { openLayer } from '../../engine/image.ts';
import { nodeOpener } from '../../cli/node-io.ts';
import { describeRun, qemuImg, run, vdisk } from '../helpers/run.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

const SIMD = readFileSync('build/wasm/inflate-simd.wasm');
const SCALAR = readFileSync('build/wasm/inflate-scalar.wasm');

const STRATEGIES = [constants.Z_DEFAULT_STRATEGY, constants.Z_FILTERED, constants.Z_HUFFMAN_ONLY, constants.Z_RLE, constants.Z_FIXED];

/** A small deterministic generator, so that failures repeat. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const TEXT = readFileSync('node_modules/typescript/lib/typescript.js').subarray(0, 4 * MiB);
const CODE = readFileSync(process.execPath).subarray(8 * MiB, 12 * MiB);

/** Guest-like data: text, machine code, runs of one byte, short periods and zeros, by turns. */
function mixed(bytes: number, seed: number): Uint8Array {
  const rnd = prng(seed);
  const out = new Uint8Array(bytes);
  for (let at = 0; at < bytes; ) {
    const n = Math.min(bytes - at, 1 + Math.floor(rnd() * 20000));
    const kind = Math.floor(rnd() * 5);
    if (kind === 0 || kind === 1) {
      const from = kind === 0 ? TEXT : CODE;
      const start = Math.floor(rnd() * (from.length - n));
      out.set(from.subarray(start, start + n), at);
    } else if (kind === 2) {
      out.fill(Math.floor(rnd() * 256), at, at + n);
    } else if (kind === 3) {
      const period = 2 + Math.floor(rnd() * 12);
      for (let i = 0; i < n; i++) out[at + i] = i < period ? Math.floor(rnd() * 256) : out[at + i - period]!;
    }
    at += n;
  }
  return out;
}

/** What zlib decodes from a stream that may be cut short: everything up to the cut. */
const decodablePrefix = (input: Uint8Array) => inflateRawSync(input, { finishFlush: constants.Z_SYNC_FLUSH });

function decode(k: Inflater, input: Uint8Array, outLen: number): { r: number; out: Uint8Array } {
  const out = new Uint8Array(outLen);
  return { r: k.inflateRaw(input, out), out };
}

interface RawExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  inflate(inPtr: number, inLen: number, outPtr: number, outLen: number): number;
}

/**
 * Calls the module directly with guard bytes around its output and after its
 * input, twice with different bytes after the input: the kernel must write
 * nothing outside the output, leave the input alone, and read nothing past it.
 */
function guarded(raw: RawExports, input: Uint8Array, outLen: number): { r: number; out: Uint8Array } {
  const GUARD = 4096;
  const base = Math.ceil(raw.heapBase() / 64) * 64;
  const inPtr = base + outLen + GUARD;
  const end = inPtr + input.length + GUARD;
  if (end > raw.memory.buffer.byteLength) raw.memory.grow(Math.ceil((end - raw.memory.buffer.byteLength) / 65536));
  const heap = new Uint8Array(raw.memory.buffer);
  const once = (after: number) => {
    heap.fill(0x5a, base, inPtr);
    heap.set(input, inPtr);
    heap.fill(after, inPtr + input.length, end);
    const r = raw.inflate(inPtr, input.length, base, outLen);
    expect(heap.subarray(base + outLen, inPtr).every((b) => b === 0x5a)).toBe(true);
    expect(Buffer.compare(heap.subarray(inPtr, inPtr + input.length), input)).toBe(0);
    return { r, out: heap.slice(base, base + outLen) };
  };
  const first = once(0x00);
  const second = once(0xff);
  expect(second.r).toBe(first.r);
  if (first.r > 0) expect(Buffer.compare(second.out.subarray(0, first.r), first.out.subarray(0, first.r))).toBe(0);
  return first;
}

// ---------------------------------------------------------------------------
// Hand-made streams, written straight from RFC 1951.

const LEN_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** A literal byte, or a match of `len` bytes from `dist` back. */
type Item = number | { len: number; dist: number };
/** A code as [value, length], most significant bit sent first. */
type Code = [number, number];

class BitWriter {
  private readonly out: number[] = [];
  private acc = 0;
  private n = 0;

  bits(value: number, count: number): this {
    for (let i = 0; i < count; i++) {
      this.acc |= ((value >>> i) & 1) << this.n;
      if (++this.n === 8) {
        this.out.push(this.acc);
        this.acc = 0;
        this.n = 0;
      }
    }
    return this;
  }

  code([value, len]: Code): this {
    for (let i = len - 1; i >= 0; i--) this.bits((value >>> i) & 1, 1);
    return this;
  }

  align(): this {
    while (this.n !== 0) this.bits(0, 1);
    return this;
  }

  /** A stored block (3.2.4), with its LEN/NLEN pair as given. */
  stored(final: number, data: ArrayLike<number>, nlen = ~data.length & 0xffff): this {
    this.bits(final, 1).bits(0, 2).align();
    this.out.push(data.length & 0xff, data.length >> 8, nlen & 0xff, nlen >> 8);
    for (let i = 0; i < data.length; i++) this.out.push(data[i]!);
    return this;
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.n ? [...this.out, this.acc] : this.out);
  }
}

/** Canonical codes for code lengths (3.2.2). */
function canonical(lens: number[]): Code[] {
  const count = new Array<number>(16).fill(0);
  for (const l of lens) if (l) count[l]!++;
  count[0] = 0;
  const next = new Array<number>(16).fill(0);
  for (let len = 1, code = 0; len < 16; len++) {
    code = (code + count[len - 1]!) << 1;
    next[len] = code;
  }
  return lens.map((l) => [l ? next[l]!++ : 0, l]);
}

const fixedLit = canonical([...new Array<number>(144).fill(8), ...new Array<number>(112).fill(9), ...new Array<number>(24).fill(7), ...new Array<number>(8).fill(8)]);
const fixedDist = canonical(new Array<number>(30).fill(5));

/** The index of the last base at most `v`: which length or distance symbol codes it. */
function lastAtMost(bases: number[], v: number): number {
  let i = bases.length - 1;
  while (bases[i]! > v) i--;
  return i;
}

/** Writes symbols with the given codes; `end` adds the end-of-block code. */
function symbols(w: BitWriter, lit: Code[], dist: Code[], items: Item[], end = true): BitWriter {
  for (const it of items) {
    if (typeof it === 'number') {
      w.code(lit[it]!);
      continue;
    }
    const li = lastAtMost(LEN_BASE, it.len);
    w.code(lit[257 + li]!).bits(it.len - LEN_BASE[li]!, LEN_EXTRA[li]!);
    const di = lastAtMost(DIST_BASE, it.dist);
    w.code(dist[di]!).bits(it.dist - DIST_BASE[di]!, DIST_EXTRA[di]!);
  }
  if (end) w.code(lit[256]!);
  return w;
}

const fixedBlock = (w: BitWriter, final: number, items: Item[], end = true) => symbols(w.bits(final, 1).bits(1, 2), fixedLit, fixedDist, items, end);

/** A code-length symbol: a length 0-15, or a repeat [16|17|18, extra bits value]. */
type ClItem = number | [number, number];
const CL_EXTRA: Record<number, number> = { 16: 2, 17: 3, 18: 7 };

/**
 * A dynamic block header (3.2.7): HLIT and HDIST from the lengths given, a
 * complete code-length code over all 19 symbols, then the code lengths, as
 * plain lengths or as the code-length symbols given.
 */
function dynamicHeader(w: BitWriter, final: number, nlit: number, ndist: number, items: ClItem[]): BitWriter {
  const clLens = Array.from({ length: 19 }, (_, i) => (i < 13 ? 4 : 5));
  const cl = canonical(clLens);
  w.bits(final, 1).bits(2, 2).bits(nlit - 257, 5).bits(ndist - 1, 5).bits(15, 4);
  for (const s of CL_ORDER) w.bits(clLens[s]!, 3);
  for (const it of items) {
    if (typeof it === 'number') w.code(cl[it]!);
    else w.code(cl[it[0]]!).bits(it[1], CL_EXTRA[it[0]]!);
  }
  return w;
}

const dynamicBlock = (w: BitWriter, final: number, litLens: number[], distLens: number[]) =>
  dynamicHeader(w, final, litLens.length, distLens.length, [...litLens, ...distLens]);

/** Literal/length code lengths with the given lengths set and the rest unused. */
function lengths(n: number, set: Record<number, number>): number[] {
  const lens = new Array<number>(n).fill(0);
  for (const [s, l] of Object.entries(set)) lens[Number(s)] = l;
  return lens;
}

/**
 * A complete code over 26 to 42 symbols with long codes that need sub-tables:
 * the first ten get lengths 1 to 10, the rest share the last 2^-10 of the code
 * space as 14- and 15-bit codes.
 */
function skewed(n: number, syms: number[]): number[] {
  const lens = new Array<number>(n).fill(0);
  const rest = syms.length - 10;
  syms.forEach((s, i) => (lens[s] = i < 10 ? i + 1 : i - 10 < 32 - rest ? 14 : 15));
  return lens;
}

/** 4096 bytes of 'a': a literal and matches at distance 1, ending exactly at the bound. */
const FILL_4096: Item[] = [97, ...new Array<Item>(15).fill({ len: 258, dist: 1 }), { len: 225, dist: 1 }];

// ---------------------------------------------------------------------------

describe.each([
  ['simd', SIMD],
  ['scalar', SCALAR],
])('WebAssembly inflate (%s build)', (name, bytes) => {
  let k: Inflater;
  let raw: RawExports;
  beforeAll(async () => {
    k = await instantiateInflate(bytes, name);
    raw = (await WebAssembly.instantiate(bytes, {})).instance.exports as unknown as RawExports;
  });

  it('decodes what zlib encodes at every level and strategy', () => {
    const data = mixed(300 * KiB, 1);
    for (let level = 0; level <= 9; level++) {
      for (const strategy of STRATEGIES) {
        const { r, out } = decode(k, deflateRawSync(data, { level, strategy }), data.length);
        expect(r, `level ${level} strategy ${strategy}`).toBe(data.length);
        expect(Buffer.compare(out, data), `level ${level} strategy ${strategy}`).toBe(0);
      }
    }
  });

  const segment = fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 3000 }),
    fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 6000 })).map(([b, n]) => new Uint8Array(n).fill(b)),
    fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 9 }), fc.integer({ min: 1, max: 3000 })).map(([p, n]) => Uint8Array.from({ length: n }, (_, i) => p[i % p.length]!)),
    fc.tuple(fc.nat(TEXT.length - 5000), fc.integer({ min: 1, max: 5000 })).map(([at, n]) => TEXT.subarray(at, at + n)),
  );
  // Segments, some repeated from far back: long matches at every distance up to the window.
  const data = fc.array(fc.tuple(segment, fc.nat(3)), { minLength: 1, maxLength: 24 }).map((parts) => {
    const chunks: Uint8Array[] = [];
    for (const [seg, again] of parts) {
      chunks.push(seg);
      if (again === 0 && chunks.length > 2) chunks.push(chunks[chunks.length - 3]!);
    }
    return Buffer.concat(chunks);
  });
  const options = fc.record({
    level: fc.integer({ min: 0, max: 9 }),
    strategy: fc.constantFrom(...STRATEGIES),
    windowBits: fc.integer({ min: 9, max: 15 }),
    memLevel: fc.integer({ min: 1, max: 9 }),
  });

  it('agrees with zlib on random and compressible data', () => {
    fc.assert(
      fc.property(data, options, fc.uint8Array({ maxLength: 600 }), (plain, opts, trailer) => {
        const packed = deflateRawSync(plain, opts);
        // Bytes after the end of the stream (the rest of the last sector in qcow2) change nothing.
        const { r, out } = decode(k, Buffer.concat([packed, trailer]), plain.length);
        expect(r).toBe(plain.length);
        expect(Buffer.compare(out, plain)).toBe(0);
      }),
      { numRuns: 150 },
    );
  });

  it('stops exactly at the bound and reports a stream that ends short', () => {
    fc.assert(
      fc.property(data, options, fc.double({ min: 0, max: 1, noNaN: true }), (plain, opts, f) => {
        const packed = deflateRawSync(plain, opts);
        const bound = Math.floor(plain.length * f);
        const sentinel = new Uint8Array(bound + 64).fill(0xa5);
        const r = k.inflateRaw(packed, sentinel.subarray(0, bound));
        expect(r).toBe(bound);
        expect(Buffer.compare(sentinel.subarray(0, bound), plain.subarray(0, bound))).toBe(0);
        expect(sentinel.subarray(bound).every((b) => b === 0xa5)).toBe(true);
        expect(decode(k, packed, plain.length + 1 + Math.floor(f * 1000)).r).toBe(plain.length);
      }),
      { numRuns: 100 },
    );
  });

  it('treats a cut stream as qemu does: fine if what remains fills the output, else an error', () => {
    fc.assert(
      fc.property(data, options, fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (plain, opts, cutAt, boundAt) => {
        const packed = deflateRawSync(plain, opts);
        const cut = packed.subarray(0, Math.floor(packed.length * cutAt));
        const available = decodablePrefix(cut).length;
        const bound = Math.max(1, Math.floor(plain.length * boundAt));
        const { r, out } = guarded(raw, cut, bound);
        if (available >= bound) {
          expect(r).toBe(bound);
          expect(Buffer.compare(out, plain.subarray(0, bound))).toBe(0);
        } else {
          expect(r).toBe(-1);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('never reads or writes out of bounds nor hangs on damaged streams, and agrees with zlib where zlib decodes', () => {
    fc.assert(
      fc.property(data, options, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (plain, opts, hits) => {
        const damaged = Uint8Array.from(deflateRawSync(plain, opts));
        for (const [at, x] of hits) damaged[at % damaged.length] = damaged[at % damaged.length]! ^ (x || 1);
        const { r, out } = guarded(raw, damaged, plain.length);
        expect(r).toBeGreaterThanOrEqual(-12);
        expect(r).toBeLessThanOrEqual(plain.length);
        let zlibOut: Buffer | undefined;
        try {
          zlibOut = decodablePrefix(damaged);
        } catch {
          // zlib refuses somewhere in the stream; past the bound the decoder may not look.
        }
        if (zlibOut === undefined) return;
        if (zlibOut.length >= plain.length) {
          expect(r).toBe(plain.length);
          expect(Buffer.compare(out, zlibOut.subarray(0, plain.length))).toBe(0);
        } else {
          expect(r < 0 || r === zlibOut.length).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('answers random bytes with an error or bytes inside the bound, touching nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4000 }), fc.integer({ min: 0, max: 70000 }), (garbage, outLen) => {
        const { r } = guarded(raw, garbage, outLen);
        expect(r).toBeGreaterThanOrEqual(-12);
        expect(r).toBeLessThanOrEqual(outLen);
      }),
      { numRuns: 500 },
    );
  });

  it('decodes a 2 MiB cluster (the largest qcow2 has) from 4 MiB of input, then small ones again', () => {
    const big = mixed(2 * MiB, 7);
    const stored = deflateRawSync(Buffer.concat([big, CODE.subarray(0, 2 * MiB)]), { level: 0 });
    expect(stored.length).toBeGreaterThan(4 * MiB);
    const { r, out } = decode(k, stored.subarray(0, 4 * MiB), 2 * MiB);
    expect(r).toBe(2 * MiB);
    expect(Buffer.compare(out, big)).toBe(0);
    const small = TEXT.subarray(0, 512);
    expect(decode(k, deflateRawSync(small), 512).out).toEqual(new Uint8Array(small));
  });

  it('decodes long codes through sub-tables, single codes and blocks without distances', () => {
    const text = Array.from('the quick brown fox jumps over the lazy dog', (c) => c.charCodeAt(0));
    const syms = [...new Set([...text, 256, 257, 258, 265, 270, 280, 285])];
    const lit = skewed(286, syms);
    const dist = skewed(30, Array.from({ length: 30 }, (_, i) => 29 - i));
    const items: Item[] = [...text, { len: 258, dist: 43 }, { len: 3, dist: 1 }, { len: 11, dist: 300 }, { len: 24, dist: 2 }, { len: 120, dist: 7 }, ...text];
    const w = dynamicBlock(new BitWriter(), 1, lit, dist);
    symbols(w, canonical(lit), canonical(dist), items);
    const expected: number[] = [];
    for (const it of items) {
      if (typeof it === 'number') expected.push(it);
      else for (let i = 0; i < it.len; i++) expected.push(expected[expected.length - it.dist]!);
    }
    const stream = w.finish();
    expect(Buffer.compare(inflateRawSync(stream), Buffer.from(expected))).toBe(0);
    expect(decode(k, stream, expected.length).out).toEqual(Uint8Array.from(expected));

    // A lone end-of-block code (one 1-bit code), then literals with no distance code at all.
    const loneLens = lengths(257, { 256: 1 });
    const lone = dynamicBlock(new BitWriter(), 0, loneLens, [0]).code(canonical(loneLens)[256]!);
    const noDist = lengths(257, { 120: 1, 256: 1 });
    dynamicBlock(lone, 1, noDist, [0]);
    const s = symbols(lone, canonical(noDist), [], [120, 120, 120]).finish();
    expect(decode(k, s, 3)).toEqual({ r: 3, out: Uint8Array.from([120, 120, 120]) });
    // One 1-bit distance code: valid, and its unused other half is an error.
    const one = lengths(286, { 97: 1, 256: 2, 257: 2 });
    const w1 = dynamicBlock(new BitWriter(), 1, one, [1]);
    expect(decode(k, symbols(w1, canonical(one), canonical([1]), [97, { len: 3, dist: 1 }]).finish(), 4).r).toBe(4);
    const w2 = dynamicBlock(new BitWriter(), 1, one, [1]);
    expect(decode(k, w2.code(canonical(one)[97]!).code(canonical(one)[257]!).bits(1, 1).finish(), 4).r).toBe(-11);
  });

  it('decodes stored blocks, empty ones included, and gives each kind of damage its own error', () => {
    const ok = new BitWriter().stored(0, []).stored(0, [1, 2, 3]);
    fixedBlock(ok, 0, [4, { len: 4, dist: 1 }]);
    ok.stored(1, [9]);
    expect(decode(k, ok.finish(), 9)).toEqual({ r: 9, out: Uint8Array.from([1, 2, 3, 4, 4, 4, 4, 4, 9]) });

    const cases: [string, Uint8Array, number, number][] = [
      ['block type 3', new BitWriter().bits(1, 1).bits(3, 2).finish(), 10, -2],
      ['stored NLEN wrong', new BitWriter().stored(1, [1, 2, 3, 4, 5], 0).finish(), 5, -3],
      ['stored data cut', new BitWriter().stored(1, new Array<number>(100).fill(7)).finish().subarray(0, 20), 100, -1],
      ['287 literal/length codes', new BitWriter().bits(1, 1).bits(2, 2).bits(30, 5).bits(0, 5).bits(0, 4).finish(), 10, -4],
      ['32 distance codes', new BitWriter().bits(1, 1).bits(2, 2).bits(0, 5).bits(31, 5).bits(0, 4).finish(), 10, -4],
      ['incomplete code-length code', new BitWriter().bits(1, 1).bits(2, 2).bits(0, 5).bits(0, 5).bits(0, 4).bits(1, 3).bits(0, 9).bits(0, 8).finish(), 10, -5],
      ['over-subscribed code-length code', new BitWriter().bits(1, 1).bits(2, 2).bits(0, 5).bits(0, 5).bits(0, 4).bits(1, 3).bits(1, 3).bits(1, 3).bits(0, 3).bits(0, 8).finish(), 10, -5],
      ['repeat with nothing before', dynamicHeader(new BitWriter(), 1, 257, 1, [[16, 0]]).finish(), 10, -6],
      ['repeat past the end', dynamicHeader(new BitWriter(), 1, 257, 1, [[18, 127], [18, 127]]).finish(), 10, -6],
      ['no end-of-block code', dynamicBlock(new BitWriter(), 1, lengths(257, { 0: 1, 1: 1 }), [1]).finish(), 10, -7],
      ['over-subscribed literal/length code', dynamicBlock(new BitWriter(), 1, lengths(257, { 0: 1, 1: 1, 256: 1 }), [1]).finish(), 10, -8],
      ['incomplete literal/length code', dynamicBlock(new BitWriter(), 1, lengths(257, { 0: 2, 256: 2 }), [1]).finish(), 10, -8],
      ['incomplete distance code', dynamicBlock(new BitWriter(), 1, lengths(257, { 0: 1, 256: 1 }), [2, 2]).finish(), 10, -9],
      ['literal/length symbol 286', new BitWriter().bits(1, 1).bits(1, 2).code(fixedLit[97]!).code(fixedLit[286]!).finish(), 10, -10],
      ['distance symbol 30', new BitWriter().bits(1, 1).bits(1, 2).code(fixedLit[97]!).code(fixedLit[257]!).code([30, 5]).finish(), 10, -11],
      ['distance before the start', fixedBlock(new BitWriter(), 1, [97, 98, { len: 3, dist: 3 }]).finish(), 10, -12],
      ['nothing at all', new Uint8Array(0), 10, -1],
    ];
    for (const [what, stream, outLen, code] of cases) expect(decode(k, stream, outLen).r, what).toBe(code);
  });

  it('reads on past a full output as zlib does: to the next symbol that would write', () => {
    const abcd = [97, 98, 99, 100];
    const head = () => fixedBlock(new BitWriter(), 0, abcd, false);
    const cases: [string, Uint8Array, number][] = [
      ['an invalid code next', head().code(fixedLit[286]!).finish(), -10],
      ['input ends next', head().finish(), 4],
      ['a literal next, then garbage', head().code(fixedLit[120]!).code(fixedLit[286]!).finish(), 4],
      ['a match too far back next', symbols(head(), fixedLit, fixedDist, [{ len: 3, dist: 9 }], false).code(fixedLit[286]!).finish(), 4],
      ['an invalid distance code next', head().code(fixedLit[257]!).code([31, 5]).finish(), -11],
      ['end of block, then block type 3', head().code(fixedLit[256]!).bits(0, 1).bits(3, 2).finish(), -2],
      ['end of block, an empty stored block, then block type 3', head().code(fixedLit[256]!).stored(0, []).bits(0, 1).bits(3, 2).finish(), -2],
      ['end of block, then a stored block with its data missing', head().code(fixedLit[256]!).stored(1, [1, 2, 3]).finish().subarray(0, -3), 4],
      ['end of block, then a stored block with a wrong NLEN', head().code(fixedLit[256]!).stored(1, [1], 7).finish(), -3],
      ['end of block, then a dynamic header without end-of-block code', dynamicBlock(head().code(fixedLit[256]!), 1, lengths(257, { 0: 1, 1: 1 }), [1]).finish(), -7],
      ['final end of block', fixedBlock(new BitWriter(), 1, abcd).code(fixedLit[286]!).finish(), 4],
    ];
    for (const [what, stream, r] of cases) expect(decode(k, stream, 4).r, what).toBe(r);
    // A match cut by the bound ends decoding at once, whatever follows.
    const clipped = symbols(fixedBlock(new BitWriter(), 0, [97, 98], false), fixedLit, fixedDist, [{ len: 10, dist: 1 }], false).code(fixedLit[286]!).finish();
    expect(decode(k, clipped, 4)).toEqual({ r: 4, out: Uint8Array.from([97, 98, 98, 98]) });
    const stored = new BitWriter().stored(0, [1, 2, 3, 4, 5, 6]).bits(0, 1).bits(3, 2).finish();
    expect(decode(k, stored, 4)).toEqual({ r: 4, out: Uint8Array.from([1, 2, 3, 4]) });
    expect(decode(k, new BitWriter().stored(0, [1, 2, 3, 4]).bits(0, 1).bits(3, 2).finish(), 4).r).toBe(-2);
  });

  it('checks the zlib header and then inflates', () => {
    const data = mixed(100 * KiB, 3);
    const out = new Uint8Array(data.length);
    for (let level = 0; level <= 9; level++) {
      out.fill(0);
      expect(k.inflateZlib(deflateSync(data, { level }), out)).toBe(data.length);
      expect(Buffer.compare(out, data)).toBe(0);
    }
    const body = deflateRawSync(data);
    const header = (cmf: number, flg: number) => Buffer.concat([Buffer.from([cmf, flg]), body]);
    // FCHECK makes CMF*256 + FLG a multiple of 31.
    const check = (cmf: number, flg: number) => flg + ((31 - ((cmf * 256 + flg) % 31)) % 31);
    expect(k.inflateZlib(header(0x78, check(0x78, 0x80)), out)).toBe(data.length);
    expect(k.inflateZlib(header(0x78, check(0x78, 0x80) ^ 1), out)).toBe(-13);
    expect(k.inflateZlib(header(0x79, check(0x79, 0x80)), out)).toBe(-13);
    expect(k.inflateZlib(header(0x88, check(0x88, 0x80)), out)).toBe(-13);
    expect(k.inflateZlib(header(0x78, check(0x78, 0xa0)), out)).toBe(-14);
    expect(k.inflateZlib(Uint8Array.from([0x78]), out)).toBe(-1);
  });
});

describe('the engine with the WebAssembly decoder loaded', () => {
  beforeAll(async () => {
    await loadWasmInflate(SIMD, SCALAR);
  });

  it('is the decoder inflateRawInto and inflateZlibInto use, and its failures are CodecErrors', () => {
    expect(wasmInflater()?.name).toMatch(/^wasm-/);
    const data = mixed(64 * KiB, 5);
    const out = new Uint8Array(data.length);
    inflateRawInto(deflateRawSync(data), out);
    expect(Buffer.compare(out, data)).toBe(0);
    inflateZlibInto(deflateSync(data), out);
    expect(Buffer.compare(out, data)).toBe(0);
    expect(() => inflateRawInto(Uint8Array.from([0xff, 0xff]), out)).toThrow(/corrupt deflate stream: invalid block type/);
    expect(() => inflateRawInto(deflateRawSync(data.subarray(0, 100)), out)).toThrow(/decodes to 100 bytes, expected 65536/);
    expect(() => inflateRawInto(deflateRawSync(data).subarray(0, 50), out)).toThrow(CodecError);
    expect(() => inflateZlibInto(deflateRawSync(data), out)).toThrow(/corrupt zlib stream: invalid zlib header/);
  });
});

// ---------------------------------------------------------------------------
// Against qemu and qemu-img.

describe('compressed clusters, against qemu', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vdisk-inflate-'));
    await loadWasmInflate(SIMD, SCALAR);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const CLUSTER = 4096;

  /** Streams for 4 KiB clusters: cut, overrunning, breaking right after the bound, damaged at random. */
  function streams(): Uint8Array[] {
    const fill = () => fixedBlock(new BitWriter(), 0, FILL_4096, false);
    const out: Uint8Array[] = [
      fixedBlock(new BitWriter(), 1, FILL_4096).finish(),
      fill().finish(),
      fill().code(fixedLit[286]!).finish(),
      fill().code(fixedLit[97]!).code(fixedLit[287]!).finish(),
      fill().code(fixedLit[257]!).code([30, 5]).finish(),
      symbols(fill(), fixedLit, fixedDist, [{ len: 3, dist: 5000 }], false).finish(),
      fill().code(fixedLit[256]!).bits(0, 1).bits(3, 2).finish(),
      fill().code(fixedLit[256]!).stored(0, []).bits(1, 1).bits(3, 2).finish(),
      fill().code(fixedLit[256]!).stored(1, [1, 2, 3], 0).finish(),
      fill().code(fixedLit[256]!).stored(1, [1, 2, 3]).finish().subarray(0, -2),
      fill().code(fixedLit[256]!).bits(1, 1).bits(2, 2).bits(30, 5).finish(),
      dynamicBlock(fill().code(fixedLit[256]!), 1, lengths(257, { 0: 1, 1: 1 }), [1]).finish(),
      symbols(fixedBlock(new BitWriter(), 0, FILL_4096.slice(0, -1), false), fixedLit, fixedDist, [{ len: 258, dist: 1 }], false).code(fixedLit[286]!).finish(),
      fixedBlock(new BitWriter(), 1, FILL_4096.slice(0, -1)).finish(),
      fixedBlock(new BitWriter(), 1, [...FILL_4096.slice(0, -1), { len: 224, dist: 1 }]).finish(),
      new BitWriter().stored(0, TEXT.subarray(0, 4000)).stored(0, TEXT.subarray(4000, 4096)).bits(0, 1).bits(3, 2).finish(),
      new BitWriter().stored(1, TEXT.subarray(0, 5000)).finish(),
      new BitWriter().stored(1, TEXT.subarray(0, 5000)).finish().subarray(0, 3000),
    ];
    const rnd = prng(42);
    for (let i = 0; i < 160; i++) {
      const at = Math.floor(rnd() * (TEXT.length - CLUSTER));
      const plain = i % 3 === 2 ? CODE.subarray(at % (CODE.length - CLUSTER), (at % (CODE.length - CLUSTER)) + CLUSTER) : TEXT.subarray(at, at + CLUSTER);
      // qemu compresses with a 4 KiB window.
      const s = Uint8Array.from(deflateRawSync(plain, { level: 1 + (i % 9), windowBits: 12, strategy: STRATEGIES[i % 5] }));
      const hits = 1 + Math.floor(rnd() * 4);
      for (let h = 0; h < hits; h++) {
        const at = Math.floor(rnd() * s.length);
        s[at] = s[at]! ^ (1 << Math.floor(rnd() * 8));
      }
      out.push(i % 4 === 3 ? s.subarray(0, Math.floor(rnd() * s.length)) : s);
    }
    return out.filter((s) => s.length > 0 && s.length <= 7 * KiB);
  }

  /**
   * A 4 KiB-cluster qcow2 from qemu-img with every cluster compressed, whose
   * L2 entries are then pointed at the given streams, each placed so that it
   * ends exactly where its last sector does (the cluster's input ends there).
   */
  function imageWith(name: string, list: Uint8Array[]): string {
    const path = join(dir, name);
    writeFileSync(path + '.raw', TEXT.subarray(0, list.length * CLUSTER));
    const made = qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', path + '.raw', path]);
    expect(made.status, describeRun('qemu-img convert -c', made)).toBe(0);
    let img = Buffer.from(readFileSync(path));
    const l1 = Number(img.readBigUInt64BE(40));
    const parts: Buffer[] = [img];
    let end = img.length;
    list.forEach((s, i) => {
      const at = Math.ceil((end + s.length) / 512) * 512 - s.length;
      parts.push(Buffer.alloc(at - end), Buffer.from(s));
      end = at + s.length;
      const sectors = BigInt(Math.ceil(((at % 512) + s.length) / 512) - 1);
      const l2 = Number(img.readBigUInt64BE(l1 + Math.floor(i / 512) * 8) & 0x00ff_ffff_ffff_fe00n);
      expect(img.readBigUInt64BE(l2 + (i % 512) * 8) >> 62n).toBe(1n);
      img.writeBigUInt64BE((1n << 62n) | (sectors << 58n) | BigInt(at), l2 + (i % 512) * 8);
    });
    img = Buffer.concat(parts);
    writeFileSync(path, img);
    return path;
  }

  /** Each cluster as qemu-io reads it: its bytes, or undefined where the read fails. */
  function qemuReads(path: string, count: number): (Buffer | undefined)[] {
    const cmds = Array.from({ length: count }, (_, i) => ['-c', `read -v ${i * CLUSTER} ${CLUSTER}`]).flat();
    const r = run('qemu-io', ['-f', 'qcow2', '-r', path, ...cmds]);
    const reads: (Buffer | undefined)[] = [];
    let hex: number[] = [];
    for (const line of r.stdout.split('\n')) {
      const m = /^[0-9a-f]{8}:\s+((?:[0-9a-f]{2} ){1,16})/.exec(line);
      if (m) {
        hex.push(...m[1]!.trim().split(' ').map((h) => parseInt(h, 16)));
      } else if (line.startsWith('read failed')) {
        reads.push(undefined);
        hex = [];
      } else if (/^read \d+\/\d+ bytes/.test(line)) {
        reads.push(Buffer.from(hex));
        hex = [];
      }
    }
    expect(reads.length, describeRun('qemu-io', r)).toBe(count);
    return reads;
  }

  it('succeeds and fails on exactly the clusters qemu does, with the same bytes', async () => {
    const list = streams();
    const path = imageWith('crafted.qcow2', list);
    const expected = qemuReads(path, list.length);
    const layer = await openLayer(new MemorySource(path, readFileSync(path)), nodeOpener, 'qcow2');
    let failures = 0;
    for (let i = 0; i < list.length; i++) {
      const m = await layer.getMapping(i * CLUSTER, CLUSTER);
      expect(m.kind).toBe('compressed');
      if (m.kind !== 'compressed') continue;
      const out = new Uint8Array(CLUSTER);
      const got = await layer.decode(m.unit, out).then(
        () => Buffer.from(out),
        () => undefined,
      );
      if (expected[i] === undefined) failures++;
      expect(got === undefined, `cluster ${i}: qemu ${expected[i] ? 'reads it' : 'fails'}`).toBe(expected[i] === undefined);
      if (got && expected[i]) expect(Buffer.compare(got, expected[i]!), `cluster ${i}`).toBe(0);
    }
    // Both outcomes are well represented.
    expect(failures).toBeGreaterThan(20);
    expect(list.length - failures).toBeGreaterThan(20);
  });

  const guest = () => Buffer.concat([mixed(3 * MiB, 11), Buffer.alloc(MiB), TEXT.subarray(0, MiB), CODE.subarray(0, MiB)]);

  it.each([
    ['qcow2', ['-o', 'cluster_size=512']],
    ['qcow2', []],
    ['qcow2', ['-o', 'cluster_size=2M']],
    ['qcow', []],
    ['vmdk', ['-o', 'subformat=streamOptimized']],
  ])('vdisk converts a compressed %s %j as qemu-img does', (fmt, opts) => {
    const raw = join(dir, 'guest.raw');
    writeFileSync(raw, guest());
    const img = join(dir, `guest.${fmt}`);
    // qemu-img exits 1 after a complete qcow conversion: qcow refuses the empty compressed write that ends it.
    const made = qemuImg(['convert', '-c', '-f', 'raw', '-O', fmt, ...opts, raw, img]);
    const same = qemuImg(['compare', '-f', 'raw', '-F', fmt, raw, img]);
    expect(same.status, describeRun('qemu-img convert -c, then compare', made) + '; ' + same.stdout).toBe(0);
    const q = qemuImg(['convert', '-O', 'raw', img, img + '.q.raw']);
    const v = vdisk(['convert', '-O', 'raw', img, img + '.v.raw']);
    expect(q.status, describeRun('qemu-img convert', q)).toBe(0);
    expect(v.status, describeRun('vdisk convert', v)).toBe(0);
    expect(Buffer.compare(readFileSync(img + '.v.raw'), readFileSync(img + '.q.raw'))).toBe(0);
    expect(Buffer.compare(readFileSync(img + '.v.raw'), readFileSync(raw))).toBe(0);
  });

  it('decodes every cluster of a compressed qcow2 in process with the WebAssembly decoder', async () => {
    const data = guest();
    const raw = join(dir, 'inproc.raw');
    writeFileSync(raw, data);
    const img = join(dir, 'inproc.qcow2');
    expect(qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, img]).status).toBe(0);
    const layer = await openLayer(new MemorySource(img, readFileSync(img)), nodeOpener, 'qcow2');
    let compressed = 0;
    for (let off = 0; off < layer.size; ) {
      const m = await layer.getMapping(off, layer.size - off);
      if (m.kind === 'compressed') {
        const out = new Uint8Array(m.unit.size);
        await layer.decode(m.unit, out);
        expect(Buffer.compare(out, data.subarray(m.unit.guestOffset, m.unit.guestOffset + m.unit.size)), `cluster at ${m.unit.guestOffset}`).toBe(0);
        compressed++;
        off = m.unit.guestOffset + m.unit.size;
      } else {
        off += m.length;
      }
    }
    expect(compressed).toBeGreaterThan(50);
  });
});
