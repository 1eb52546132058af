/**
 * First difference between two buffers: the TypeScript twin of the
 * WebAssembly kernel (asm/compare.ts), and the reference in its tests.
 */

/** Offset of the first byte where `a` and `b` differ, comparing min(a.length, b.length) bytes; -1 if none. */
export function firstDifferenceTs(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  // Word-at-a-time when both views are 4-byte aligned; bytes for the rest.
  if (((a.byteOffset | b.byteOffset) & 3) === 0) {
    const wa = new Uint32Array(a.buffer, a.byteOffset, n >>> 2);
    const wb = new Uint32Array(b.buffer, b.byteOffset, n >>> 2);
    let w = 0;
    while (w < wa.length && wa[w] === wb[w]) w++;
    i = w << 2;
  }
  for (; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}
