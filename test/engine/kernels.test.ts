// The CRC-32C and xxHash32 kernels against their TypeScript twins and the
// published vectors (every WebAssembly build, called directly, and through the
// Kernels interface), the kernels module's static data staying in the page the
// host reserves for it, and `compare`'s pipelined walk against a plain
// sector-by-sector reference on layers made up here.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { crc32c } from '../../engine/codecs/crc32c.ts';
import { Xxh32, xxh32Hex } from '../../engine/kernels/xxh32.ts';
import { loadWasmKernels, type Kernels } from '../../engine/kernels/index.ts';
import { compareImages, CompareStepError, type CompareSide } from '../../engine/ops/compare.ts';
import { MemorySource, type ByteSource } from '../../engine/io/source.ts';
import type { Layer, Mapping } from '../../engine/driver.ts';
import type { Image } from '../../engine/image.ts';

/** The builds for plain memory, and the CLI's for shared memory. */
const BUILDS = ['simd', 'scalar', 'shared'] as const;
const wasm = (build: (typeof BUILDS)[number]) => readFileSync(`build/wasm/kernels-${build}.wasm`);
const PAGE = 64 * 1024;
const bytes = (n: number, f: (i: number) => number) => Uint8Array.from({ length: n }, (_, i) => f(i));
const text = (s: string) => new TextEncoder().encode(s);

interface RawExports {
  crc32c(ptr: number, len: number, crc: number): number;
  xxh32State(): number;
  xxh32Stripes(ptr: number, len: number): void;
}

/** One build instantiated on a fresh memory of `pages` pages, with its exports called directly. */
async function instantiate(build: (typeof BUILDS)[number], pages = 2) {
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: build === 'shared' });
  const { instance } = await WebAssembly.instantiate(wasm(build), { env: { memory } });
  return { memory, heap: new Uint8Array(memory.buffer), exp: instance.exports as unknown as RawExports };
}

/** The active data segments of a module: [start, end) in memory. */
function dataSegments(module: Uint8Array): [number, number][] {
  let p = 8;
  const uleb = () => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      const b = module[p++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return v;
    }
  };
  const segments: [number, number][] = [];
  while (p < module.length) {
    const id = module[p++]!;
    const size = uleb();
    const next = p + size;
    if (id === 11) {
      for (let n = uleb(); n > 0; n--) {
        const flags = uleb();
        expect(flags === 0 || flags === 1).toBe(true);
        let start = -1;
        if (flags === 0) {
          expect(module[p++]).toBe(0x41); // i32.const
          start = uleb();
          expect(module[p++]).toBe(0x0b); // end
        }
        const length = uleb();
        if (start >= 0) segments.push([start, start + length]);
        p += length;
      }
    }
    p = next;
  }
  return segments;
}

describe('kernels module', () => {
  it.each(BUILDS)('%s: keeps its static data inside the first page, below the arena', async (build) => {
    for (const [, end] of dataSegments(wasm(build))) expect(end).toBeLessThanOrEqual(PAGE);
    // The start function builds the CRC tables; nothing may land above the page.
    const { heap } = await instantiate(build);
    expect(heap.subarray(PAGE).every((b) => b === 0)).toBe(true);
    expect(heap.subarray(0, PAGE).some((b) => b !== 0)).toBe(true);
  });
});

describe('CRC-32C kernel', () => {
  const vectors: [Uint8Array, number][] = [
    [new Uint8Array(32), 0x8a9136aa],
    [bytes(32, () => 0xff), 0x62a8ab43],
    [bytes(32, (i) => i), 0x46dd794e],
    [bytes(32, (i) => 31 - i), 0x113fdb5c],
    [text('123456789'), 0xe3069283],
    [new Uint8Array(0), 0],
  ];

  it.each(BUILDS)('%s: gives the RFC 3720 vectors and the check value', async (build) => {
    const { heap, exp } = await instantiate(build);
    for (const [data, expected] of vectors) {
      heap.set(data, PAGE + 3);
      expect(exp.crc32c(PAGE + 3, data.length, 0) >>> 0).toBe(expected);
    }
  });

  it.each(BUILDS)('%s: agrees with the twin at any alignment and length, continuing a running CRC', async (build) => {
    const { heap, exp } = await instantiate(build);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.nat(63), fc.nat(), fc.nat(), (data, align, cut, seed) => {
        const at = cut % (data.length + 1);
        const previous = seed >>> 0;
        heap.set(data, PAGE + align);
        expect(exp.crc32c(PAGE + align, data.length, previous) >>> 0).toBe(crc32c(data, previous));
        const first = exp.crc32c(PAGE + align, at, 0);
        expect(exp.crc32c(PAGE + align + at, data.length - at, first) >>> 0).toBe(crc32c(data));
      }),
      { numRuns: 300 },
    );
  });

  it('through the Kernels interface: arena buffers and plain ones give the twin\'s answer', async () => {
    const k = await loadWasmKernels(wasm('simd'), wasm('scalar'));
    const buf = k.alloc(1 << 16);
    fc.assert(
      fc.property(fc.nat(1 << 16), fc.nat(1 << 16), fc.nat(), (start, len, seed) => {
        const view = buf.subarray(Math.min(start, buf.length), Math.min(buf.length, start + len));
        for (let i = 0; i < view.length; i++) view[i] = (i * 131 + seed) & 0xff;
        expect(k.crc32c(view, seed >>> 0)).toBe(crc32c(view, seed >>> 0));
        expect(k.crc32c(view.slice())).toBe(crc32c(view));
      }),
      { numRuns: 200 },
    );
    k.free(buf);
  });
});

describe('xxHash32 kernel', () => {
  /** xxHash32 of `data` with the whole stripes folded by the raw kernel and the rest by the twin. */
  class RawXxh32 extends Xxh32 {
    constructor(private readonly k: Awaited<ReturnType<typeof instantiate>>) {
      super();
    }
    protected override stripes(d: Uint8Array, from: number, to: number): void {
      const lanes = new Int32Array(this.k.memory.buffer, this.k.exp.xxh32State(), 4);
      this.k.heap.set(d.subarray(from, to), PAGE + 5);
      lanes.set(this.lanes);
      this.k.exp.xxh32Stripes(PAGE + 5, to - from);
      this.lanes.set(lanes);
    }
  }

  it.each(BUILDS)('%s: folds stripes exactly as the twin does', async (build) => {
    const raw = await instantiate(build);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (data) => {
        expect(new RawXxh32(raw).update(data).digest()).toBe(new Xxh32().update(data).digest());
      }),
      { numRuns: 200 },
    );
    expect(new RawXxh32(raw).update(text('Nobody inspects the spammish repetition')).digest()).toBe(0xe2293b2f);
  });

  it('through the Kernels interface: the published values, whatever the pieces and wherever they live', async () => {
    const k = await loadWasmKernels(wasm('simd'), wasm('scalar'));
    const hash = (data: Uint8Array, seed?: number) => k.xxh32(seed).update(data).digest();
    expect(hash(text(''))).toBe(0x02cc5d05);
    expect(hash(text('a'))).toBe(0x550d7456);
    expect(hash(text('abc'))).toBe(0x32d153ff);
    expect(hash(text('Nobody inspects the spammish repetition'))).toBe(0xe2293b2f);
    const buf = k.alloc(1 << 16);
    fc.assert(
      fc.property(fc.nat(1 << 16), fc.array(fc.nat(1 << 16), { maxLength: 5 }), fc.nat(), (len, cuts, seed) => {
        const data = buf.subarray(0, len);
        for (let i = 0; i < len; i++) data[i] = (i * 7 + (i >>> 9) + seed) & 0xff;
        const h = k.xxh32(seed >>> 0);
        let from = 0;
        for (const c of [...cuts].sort((x, y) => x - y)) {
          const to = Math.min(c, len);
          if (to < from) continue;
          h.update(data.subarray(from, to));
          from = to;
        }
        h.update(data.subarray(from));
        expect(h.digest()).toBe(new Xxh32(seed >>> 0).update(data.slice()).digest());
      }),
      { numRuns: 100 },
    );
    k.free(buf);
  });
});

// compare: layers made up here (runs of data, zeros and unallocated space over
// an in-memory file), compared by compareImages and by a plain walk over the
// guest bytes, sector by sector.

const SECTOR = 512;

type RunKind = 'data' | 'zero' | 'backing';
interface Run {
  kind: RunKind;
  sectors: number;
}

/** A layer over `runs`; each mapping answer is cut at `cap` bytes after the offset asked, as some drivers cut theirs. */
function layerOf(source: ByteSource, runs: Run[], cap: number): Layer {
  const starts: number[] = [];
  let size = 0;
  for (const r of runs) {
    starts.push(size);
    size += r.sectors * SECTOR;
  }
  return {
    format: 'test',
    source,
    size,
    async getMapping(offset, maxLength): Promise<Mapping> {
      if (offset >= size) return { kind: 'eof', offset, length: 0 };
      let i = starts.length - 1;
      while (starts[i]! > offset) i--;
      const run = runs[i]!;
      const length = Math.min(starts[i]! + run.sectors * SECTOR - offset, maxLength, cap);
      if (run.kind === 'data') return { kind: 'data', offset, length, source, hostOffset: offset };
      return { kind: run.kind, offset, length };
    },
    decode: async () => {},
    facts: () => ({}),
    snapshots: () => [],
    atSnapshot: async () => {
      throw new Error('no snapshots');
    },
  };
}

/** The guest bytes of a layer: data runs from the file, the rest zeros. */
function guestBytes(file: Uint8Array, runs: Run[]): Uint8Array {
  const out = new Uint8Array(runs.reduce((n, r) => n + r.sectors * SECTOR, 0));
  let at = 0;
  for (const r of runs) {
    const end = at + r.sectors * SECTOR;
    if (r.kind === 'data') out.set(file.subarray(at, end), at);
    at = end;
  }
  return out;
}

/** What compare must answer, found the slow way: every sector of both sides, then the larger one's tail. */
function expected(x: Uint8Array, y: Uint8Array, all: boolean) {
  const total = Math.min(x.length, y.length);
  const big = x.length > y.length ? x : y;
  const differs = (s: number) => {
    for (let i = s; i < s + SECTOR; i++) if (i < total ? x[i] !== y[i] : big[i] !== 0) return true;
    return false;
  };
  const sectors: number[] = [];
  for (let s = 0; s < big.length; s += SECTOR) if (differs(s)) sectors.push(s);
  const messages: string[] = [];
  const firstMain = sectors.find((s) => s < total);
  if (firstMain !== undefined) messages.push(`Content mismatch at offset ${firstMain}!`);
  if (x.length !== y.length && (all || firstMain === undefined)) {
    messages.push('Warning: Image size mismatch!');
    if (firstMain === undefined && sectors.length > 0) messages.push(`Content mismatch at offset ${sectors[0]}!`);
  }
  if (sectors.length === 0) messages.push('Images are identical.');
  const ranges: { start: number; length: number }[] = [];
  for (const s of all ? sectors : sectors.slice(0, 1)) {
    const last = ranges[ranges.length - 1];
    if (last && last.start + last.length === s) last.length += SECTOR;
    else ranges.push({ start: s, length: SECTOR });
  }
  const hash = (b: Uint8Array, r: { start: number; length: number }) =>
    r.start + r.length > b.length ? undefined : xxh32Hex(new Xxh32().update(b.subarray(r.start, r.start + r.length)).digest());
  return { identical: sectors.length === 0, messages, ranges: ranges.map((r) => ({ ...r, hashA: hash(x, r), hashB: hash(y, r) })) };
}

/** Reads not finished yet, over all slow sources: none may still be writing into a buffer once compare returns. */
let inFlight = 0;

/** A source whose reads finish after a few milliseconds, out of order, so several are in flight at once. */
class SlowSource extends MemorySource {
  override async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    inFlight++;
    try {
      await new Promise((r) => setTimeout(r, (offset / SECTOR) % 3));
      return await super.read(offset, length, into);
    } finally {
      inFlight--;
    }
  }
}

const side = (name: string, file: Uint8Array, runs: Run[], cap: number): CompareSide => {
  const layer = layerOf(new SlowSource(name, file), runs, cap);
  const image: Image = { layers: [layer], size: layer.size };
  return { image, name };
};

const runArb = fc.record({
  kind: fc.constantFrom<RunKind>('data', 'zero', 'backing'),
  // Short runs, and runs longer than one compare buffer (2 MiB).
  sectors: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 4608 })),
});

/** The same bytes on both sides, so most data compares equal; flips make the differences. */
const PATTERN = bytes(16 << 20, (i) => (i * 31 + (i >>> 12)) & 0xff);

describe('compare (pipelined) against a sector-by-sector walk', () => {
  let k: Kernels;
  beforeAll(async () => {
    k = await loadWasmKernels(wasm('simd'), wasm('scalar'));
  });

  it('finds the same first difference, every differing range and the same hashes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(runArb, { minLength: 1, maxLength: 6 }),
        fc.array(runArb, { minLength: 1, maxLength: 6 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }),
        fc.constantFrom(Infinity, 64 * 1024 + SECTOR, 1 << 20),
        fc.boolean(),
        fc.boolean(),
        async (runsA, runsB, flips, cap, all, sameLayout) => {
          if (sameLayout) runsB = runsA;
          const sizeA = runsA.reduce((n, r) => n + r.sectors * SECTOR, 0);
          const sizeB = runsB.reduce((n, r) => n + r.sectors * SECTOR, 0);
          const fileA = PATTERN.slice(0, sizeA);
          const fileB = PATTERN.slice(0, sizeB);
          for (const [at, x] of flips) fileB[at % sizeB]! ^= x;
          const report = await compareImages(side('a', fileA, runsA, cap), side('b', fileB, runsB, cap), { all });
          const want = expected(guestBytes(fileA, runsA), guestBytes(fileB, runsB), all);
          expect(report.messages).toEqual(want.messages);
          expect(report.identical).toBe(want.identical);
          expect(report.ranges).toEqual(want.ranges);
          expect(inFlight).toBe(0);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('gives its buffers back to the arena', () => {
    // A plain buffer (what alloc returns when the arena is full) starts at offset 0.
    const probe = k.alloc(28 * 1024 * 1024);
    k.free(probe);
    expect(probe.byteOffset).toBe(PAGE);
  });

  /** A file that fails every read at or past `from`. */
  class FailingSource extends SlowSource {
    constructor(
      name: string,
      bytes: Uint8Array,
      private readonly from: number,
    ) {
      super(name, bytes);
    }
    override async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
      if (offset + length > this.from) throw new Error('Input/output error');
      return super.read(offset, length, into);
    }
  }

  const MiB = 1 << 20;
  const failing = (file: Uint8Array, from: number): CompareSide => {
    const layer = layerOf(new FailingSource('bad', file, from), [{ kind: 'data', sectors: file.length / SECTOR }], Infinity);
    return { image: { layers: [layer], size: layer.size }, name: 'bad' };
  };

  it('reports a read error only when the walk gets that far', async () => {
    const file = PATTERN.slice();
    const good = side('good', file, [{ kind: 'data', sectors: file.length / SECTOR }], Infinity);
    // A difference before the unreadable part: that is the answer, though later reads already failed.
    const changed = file.slice();
    changed[MiB + 700]! ^= 1;
    const early = side('changed', changed, [{ kind: 'data', sectors: file.length / SECTOR }], Infinity);
    const report = await compareImages(early, failing(file, 8 * MiB));
    expect(report.messages).toEqual([`Content mismatch at offset ${MiB + 512}!`]);
    expect(inFlight).toBe(0);
    // No difference before it: the read error, for the offset the walk was at.
    const err = await compareImages(good, failing(file, 8 * MiB)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CompareStepError);
    expect(err).toMatchObject({ step: 'read', file: 'bad', offset: 8 * MiB });
  });
});
