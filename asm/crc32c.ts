// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of VHDX
// metadata and of iSCSI (RFC 3720). WebAssembly has no carry-less multiply and
// no CRC instruction, so this is table-driven slicing-by-16: sixteen 256-entry
// tables let one step fold 16 bytes with 16 independent lookups. The tables
// (16 KiB) live in the static page the host leaves below its arena and are
// built once, when the module starts. Same in the SIMD and scalar builds.

const POLY: u32 = 0x82f63b78;
const SLICES = 16;

/** TABLES[k * 256 + b]: the CRC register after byte b followed by k zero bytes. */
const TABLES = memory.data(SLICES * 256 * 4, 64);

// @ts-ignore: decorator
@inline function entry(k: u32, b: u32): u32 {
  return load<u32>(TABLES + (((k << 8) | b) << 2));
}

for (let b: u32 = 0; b < 256; b++) {
  let c = b;
  for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  store<u32>(TABLES + (b << 2), c);
}
for (let k: u32 = 1; k < <u32>SLICES; k++) {
  for (let b: u32 = 0; b < 256; b++) {
    const prev = entry(k - 1, b);
    store<u32>(TABLES + (((k << 8) | b) << 2), (prev >>> 8) ^ entry(0, prev & 0xff));
  }
}

/**
 * The CRC-32C of the `len` bytes at `ptr`, continuing `crc` (the result of an
 * earlier call, or 0 to start): crc32c(b, crc32c(a, 0)) is the CRC of a then b.
 */
export function crc32c(ptr: usize, len: usize, crc: u32): u32 {
  let c = ~crc;
  let p = ptr;
  const end = ptr + len;
  while (p + 16 <= end) {
    // Little-endian words: the register folds into the first four bytes.
    const w0 = load<u32>(p) ^ c;
    const w1 = load<u32>(p, 4);
    const w2 = load<u32>(p, 8);
    const w3 = load<u32>(p, 12);
    c =
      entry(15, w0 & 0xff) ^ entry(14, (w0 >>> 8) & 0xff) ^ entry(13, (w0 >>> 16) & 0xff) ^ entry(12, w0 >>> 24) ^
      entry(11, w1 & 0xff) ^ entry(10, (w1 >>> 8) & 0xff) ^ entry(9, (w1 >>> 16) & 0xff) ^ entry(8, w1 >>> 24) ^
      entry(7, w2 & 0xff) ^ entry(6, (w2 >>> 8) & 0xff) ^ entry(5, (w2 >>> 16) & 0xff) ^ entry(4, w2 >>> 24) ^
      entry(3, w3 & 0xff) ^ entry(2, (w3 >>> 8) & 0xff) ^ entry(1, (w3 >>> 16) & 0xff) ^ entry(0, w3 >>> 24);
    p += 16;
  }
  while (p < end) {
    c = (c >>> 8) ^ entry(0, (c ^ load<u8>(p)) & 0xff);
    p++;
  }
  return ~c;
}
