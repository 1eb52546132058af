// CRC-32C against the known vectors of RFC 3720 (iSCSI, appendix B.4) and
// the usual check value, plus the chaining property the VHDX log relies on
// (an entry's checksum is computed over sectors read one at a time).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32c } from '../../engine/codecs/crc32c.ts';

const bytes = (n: number, f: (i: number) => number) => Uint8Array.from({ length: n }, (_, i) => f(i));

describe('crc32c', () => {
  it('matches the RFC 3720 vectors', () => {
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(bytes(32, () => 0xff))).toBe(0x62a8ab43);
    expect(crc32c(bytes(32, (i) => i))).toBe(0x46dd794e);
    expect(crc32c(bytes(32, (i) => 31 - i))).toBe(0x113fdb5c);
    const readPdu = Uint8Array.from([
      0x01, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 0x14, 0, 0, 0, 0x18,
      0x28, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0,
    ]);
    expect(crc32c(readPdu)).toBe(0xd9963a56);
  });

  it('gives the standard check value and the empty CRC', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it('continues across pieces exactly as over the whole', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (data, cut) => {
        const at = data.length === 0 ? 0 : cut % (data.length + 1);
        expect(crc32c(data.subarray(at), crc32c(data.subarray(0, at)))).toBe(crc32c(data));
      }),
    );
  });

  it('agrees with a bit-at-a-time reference on unaligned lengths', () => {
    const reference = (data: Uint8Array) => {
      let c = 0xffffffff;
      for (const b of data) {
        c ^= b;
        for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      }
      return ~c >>> 0;
    };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (data) => {
        expect(crc32c(data)).toBe(reference(data));
      }),
    );
  });
});
