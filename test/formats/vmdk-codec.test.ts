// zlib (RFC 1950) decoding for stream-optimized VMDK grains: exact-size
// output, the bound that stops a decompression bomb, and typed failures on
// streams that are short, corrupt or raw deflate without the zlib header.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { deflateRawSync, deflateSync } from 'node:zlib';
import { CodecError, inflateZlibInto } from '../../engine/codecs/deflate.ts';

const text = new TextEncoder().encode('2024-03-01 12:00:01 host kernel: link is up\n'.repeat(2000));

describe('inflateZlibInto', () => {
  it('decodes a zlib stream into a buffer of exactly its size', () => {
    const out = new Uint8Array(text.length);
    inflateZlibInto(deflateSync(text), out);
    expect(out).toEqual(text);
  });

  it('round-trips any data at any level', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 70000 }), fc.integer({ min: 0, max: 9 }), (data, level) => {
        const out = new Uint8Array(data.length);
        if (data.length === 0) return;
        inflateZlibInto(deflateSync(data, { level }), out);
        expect(out).toEqual(data);
      }),
      { numRuns: 60 },
    );
  });

  it('cuts a stream that decodes to more than the buffer at the bound', () => {
    const bomb = deflateSync(new Uint8Array(16 * 1024 * 1024));
    const out = new Uint8Array(65536).fill(7);
    inflateZlibInto(bomb, out);
    expect(out.every((b) => b === 0)).toBe(true);
  });

  it('refuses a stream that ends before the buffer is full', () => {
    expect(() => inflateZlibInto(deflateSync(text.subarray(0, 1000)), new Uint8Array(4096))).toThrow(CodecError);
  });

  it('refuses raw deflate, a damaged header, a truncated stream and an empty one', () => {
    const out = new Uint8Array(text.length);
    expect(() => inflateZlibInto(deflateRawSync(text), out)).toThrow(CodecError);
    const bad = deflateSync(text);
    bad[1] = (bad[1] ?? 0) ^ 1;
    expect(() => inflateZlibInto(bad, out)).toThrow(CodecError);
    expect(() => inflateZlibInto(deflateSync(text).subarray(0, 40), out)).toThrow(CodecError);
    expect(() => inflateZlibInto(new Uint8Array(0), out)).toThrow(CodecError);
    // Header and Adler-32 trailer with nothing between: not zeros.
    expect(() => inflateZlibInto(Uint8Array.from([0x78, 0x9c, 0, 0, 0, 1]), new Uint8Array(16))).toThrow(CodecError);
  });
});
