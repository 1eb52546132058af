// Zero detection: is a byte range all zeros? The hot path of sparse output and
// zero-cluster detection. Memory is owned by the host: it places data at `ptr`
// and calls in; nothing here allocates. Built twice: with SIMD (v128 OR
// reduction) and scalar (u64 OR reduction); the host picks at load.

// @ts-ignore: decorator
@inline const SIMD = ASC_FEATURE_SIMD;

/** Returns 1 when the `len` bytes at `ptr` are all zero, else 0. */
export function isZero(ptr: usize, len: usize): i32 {
  let p = ptr;
  const end = ptr + len;
  if (SIMD) {
    // Four vectors per step: OR-reduce, test once per 64 bytes.
    while (p + 64 <= end) {
      const acc = v128.or(
        v128.or(v128.load(p), v128.load(p, 16)),
        v128.or(v128.load(p, 32), v128.load(p, 48)),
      );
      if (v128.any_true(acc)) return 0;
      p += 64;
    }
  } else {
    while (p + 32 <= end) {
      if ((load<u64>(p) | load<u64>(p, 8) | load<u64>(p, 16) | load<u64>(p, 24)) != 0) return 0;
      p += 32;
    }
  }
  while (p < end) {
    if (load<u8>(p) != 0) return 0;
    p++;
  }
  return 1;
}
