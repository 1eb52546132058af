/**
 * Zero detection. `isZeroTs` is the plain TypeScript twin of the WebAssembly
 * kernel (asm/zero.ts) and the reference in its tests; the engine calls
 * whichever `kernels()` currently provides.
 */

/** True when every byte of `buf` is zero. */
export function isZeroTs(buf: Uint8Array): boolean {
  let i = 0;
  const n = buf.length;
  // Word-at-a-time when the view is 4-byte aligned; bytes for the rest.
  if ((buf.byteOffset & 3) === 0) {
    const words = new Uint32Array(buf.buffer, buf.byteOffset, n >>> 2);
    for (let w = 0; w < words.length; w++) if (words[w] !== 0) return false;
    i = words.length << 2;
  }
  for (; i < n; i++) if (buf[i] !== 0) return false;
  return true;
}
