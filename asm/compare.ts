// First difference: the offset of the first byte at which two ranges differ,
// or -1. The inner loop of `compare`. Like zero.ts: host-owned memory, no
// allocation, a SIMD build (v128 compare per 64 bytes) and a scalar one.

// @ts-ignore: decorator
@inline const SIMD = ASC_FEATURE_SIMD;

/** Offset of the first differing byte of the `len` bytes at `a` and `b`, or -1. */
export function firstDifference(a: usize, b: usize, len: usize): isize {
  let i: usize = 0;
  if (SIMD) {
    while (i + 64 <= len) {
      const d = v128.or(
        v128.or(v128.xor(v128.load(a + i), v128.load(b + i)), v128.xor(v128.load(a + i, 16), v128.load(b + i, 16))),
        v128.or(v128.xor(v128.load(a + i, 32), v128.load(b + i, 32)), v128.xor(v128.load(a + i, 48), v128.load(b + i, 48))),
      );
      if (v128.any_true(d)) break;
      i += 64;
    }
  } else {
    while (i + 32 <= len) {
      if (
        (load<u64>(a + i) ^ load<u64>(b + i)) |
          (load<u64>(a + i, 8) ^ load<u64>(b + i, 8)) |
          (load<u64>(a + i, 16) ^ load<u64>(b + i, 16)) |
          (load<u64>(a + i, 24) ^ load<u64>(b + i, 24)) !=
        0
      ) break;
      i += 32;
    }
  }
  // The differing block (or the tail) byte by byte.
  while (i < len) {
    if (load<u8>(a + i) != load<u8>(b + i)) return <isize>i;
    i++;
  }
  return -1;
}
