// xxHash32's inner loop: whole 16-byte stripes folded into the four lane
// accumulators. The host keeps the rest of the streaming state (total length,
// a partial stripe, the final mix) in engine/kernels/xxh32.ts and passes the
// accumulators through a 16-byte slot in the static page, since a call cannot
// return four values. Scalar in both builds: the four lanes are independent
// 32-bit multiply chains, and i32x4.mul's latency makes one vector chain slower.

const P1: u32 = 0x9e3779b1;
const P2: u32 = 0x85ebca77;

/** The four lane accumulators, read and written by `xxh32Stripes`. */
const STATE = memory.data(16, 16);

/** Where the host puts the accumulators (v1..v4, u32 little-endian) before calling `xxh32Stripes`. */
export function xxh32State(): usize {
  return STATE;
}

// @ts-ignore: decorator
@inline function round(acc: u32, lane: u32): u32 {
  return rotl<u32>(acc + lane * P2, 13) * P1;
}

/** Folds the `len` bytes at `ptr` (a multiple of 16) into the accumulators at `xxh32State()`. */
export function xxh32Stripes(ptr: usize, len: usize): void {
  let v1 = load<u32>(STATE);
  let v2 = load<u32>(STATE, 4);
  let v3 = load<u32>(STATE, 8);
  let v4 = load<u32>(STATE, 12);
  let p = ptr;
  const end = ptr + (len & ~(<usize>15));
  while (p < end) {
    v1 = round(v1, load<u32>(p));
    v2 = round(v2, load<u32>(p, 4));
    v3 = round(v3, load<u32>(p, 8));
    v4 = round(v4, load<u32>(p, 12));
    p += 16;
  }
  store<u32>(STATE, v1);
  store<u32>(STATE, v2, 4);
  store<u32>(STATE, v3, 8);
  store<u32>(STATE, v4, 12);
}
