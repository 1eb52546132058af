// Decoding tables for the canonical Huffman codes of RFC 1951 (3.2.2). A code
// is read least-significant bit first from the stream, so a table indexed by
// the next ROOT bits of the bit buffer holds, at every index whose low `len`
// bits are a symbol's bit-reversed code, that symbol's entry. Codes longer
// than the root index a sub-table through a pointer entry. Tables live in
// static memory; building one allocates nothing.
//
// An entry is a u32:
//   bits 0-4    bits to drop for this code (after the root bits, in a sub-table)
//   bits 8-11   extra bits that follow (length or distance); in a pointer entry,
//               how many bits index the sub-table
//   bits 12-15  flags: literal, end of block, sub-table pointer, invalid
//   bits 16-31  the literal byte, the base length or distance, or the sub-table's offset

export const F_LIT: u32 = 0x1000;
export const F_EOB: u32 = 0x2000;
export const F_SUB: u32 = 0x4000;
export const F_BAD: u32 = 0x8000;

/** Which alphabet a table decodes; it decides the entries and which incomplete codes are allowed. */
export const KIND_CODELEN: u32 = 0;
export const KIND_LITLEN: u32 = 1;
export const KIND_DIST: u32 = 2;

/** The longest code deflate allows (3.2.7). */
const MAX_BITS: u32 = 15;

// Base values and extra-bit counts of length symbols 257-285 and distance
// symbols 0-29 (3.2.5).
const LEN_BASE = memory.data<u16>([
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
]);
const LEN_EXTRA = memory.data<u8>([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]);
const DIST_BASE = memory.data<u16>([
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
  8193, 12289, 16385, 24577,
]);
const DIST_EXTRA = memory.data<u8>([0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]);

// Scratch for one build: codes per length, where each length starts in canonical order, the symbols in that order.
const COUNT = memory.data(4 * 16, 16);
const OFFSET = memory.data(4 * 16, 16);
const SORTED = memory.data(2 * 320, 16);

/** The entry for `sym` whose code leaves `drop` bits to drop at its table level. */
// @ts-ignore: decorator
@inline function entryFor(kind: u32, sym: u32, drop: u32): u32 {
  if (kind == KIND_LITLEN) {
    if (sym < 256) return F_LIT | (sym << 16) | drop;
    if (sym == 256) return F_EOB | drop;
    // 286 and 287 take part in the fixed code but never stand for a length.
    if (sym > 285) return F_BAD | drop;
    const i = sym - 257;
    return (<u32>load<u16>(LEN_BASE + (i << 1)) << 16) | (<u32>load<u8>(LEN_EXTRA + i) << 8) | drop;
  }
  if (kind == KIND_DIST) {
    if (sym > 29) return F_BAD | drop;
    return (<u32>load<u16>(DIST_BASE + (sym << 1)) << 16) | (<u32>load<u8>(DIST_EXTRA + sym) << 8) | drop;
  }
  return (sym << 16) | drop;
}

/** The low `len` bits of `code`, reversed. */
// @ts-ignore: decorator
@inline function reverse(code: u32, len: u32): u32 {
  let r: u32 = 0;
  for (let i: u32 = 0; i < len; i++) {
    r = (r << 1) | (code & 1);
    code >>= 1;
  }
  return r;
}

/**
 * Builds the table for the `n` code lengths at `lens` into `table` (`root`
 * index bits, room for `capacity` entries). Returns 0, or -1 when the lengths
 * do not form a usable code: over-subscribed, or incomplete where deflate
 * allows no gap (anything but a lone 1-bit code, or no distance code at all).
 */
export function buildTable(lens: usize, n: u32, table: usize, root: u32, capacity: u32, kind: u32): i32 {
  memory.fill(COUNT, 0, 4 * 16);
  for (let s: u32 = 0; s < n; s++) {
    const p = COUNT + (<usize>load<u8>(lens + s) << 2);
    store<u32>(p, load<u32>(p) + 1);
  }
  let max: u32 = 0;
  // Kraft: `left` is the unused share of the code space, in units of 2^-len.
  let left: i32 = 1;
  for (let len: u32 = 1; len <= MAX_BITS; len++) {
    const c = load<u32>(COUNT + (len << 2));
    if (c != 0) max = len;
    left = (left << 1) - <i32>c;
    if (left < 0) return -1;
  }
  const incomplete = left > 0;
  if (incomplete) {
    // As zlib: a gap only in a code of one 1-bit symbol, or in a distance code with no symbols at all.
    if (!((kind != KIND_CODELEN && max == 1) || (kind == KIND_DIST && max == 0))) return -1;
    // The unused half of the code space decodes as an error, known from its
    // first bit (as zlib decides); with at most one 1-bit code there are no sub-tables.
    const fill = F_BAD | 1;
    for (let i: u32 = 0, size: u32 = 1 << root; i < size; i++) store<u32>(table + (i << 2), fill);
    if (max == 0) return 0;
  }

  // Symbols in canonical order, by length then by symbol (3.2.2): a counting sort.
  let at: u32 = 0;
  for (let len: u32 = 1; len <= max; len++) {
    store<u32>(OFFSET + (len << 2), at);
    at += load<u32>(COUNT + (len << 2));
  }
  for (let s: u32 = 0; s < n; s++) {
    const len = <usize>load<u8>(lens + s);
    if (len == 0) continue;
    const p = OFFSET + (len << 2);
    const o = load<u32>(p);
    store<u16>(SORTED + (o << 1), <u16>s);
    store<u32>(p, o + 1);
  }

  const rootSize: u32 = 1 << root;
  const rootMask: u32 = rootSize - 1;
  let next: u32 = rootSize;
  let prefix: u32 = 0xffffffff;
  let subBase: u32 = 0;
  let subSize: u32 = 0;
  let code: u32 = 0;
  let idx: u32 = 0;
  for (let len: u32 = 1; len <= max; len++) {
    const count = load<u32>(COUNT + (len << 2));
    for (let k: u32 = 0; k < count; k++) {
      const sym = <u32>load<u16>(SORTED + (idx << 1));
      idx++;
      const rev = reverse(code, len);
      code++;
      if (len <= root) {
        const e = entryFor(kind, sym, len);
        for (let i = rev; i < rootSize; i += 1 << len) store<u32>(table + (i << 2), e);
        continue;
      }
      if ((rev & rootMask) != prefix) {
        // A new prefix: its sub-table is as wide as the codes that remain
        // under it need, found by filling its share of the code space with
        // the remaining codes, shortest first.
        prefix = rev & rootMask;
        let bits = len - root;
        let room = (1 << bits) - <i32>(count - k);
        for (let l = len + 1; room > 0 && l <= max; l++) {
          bits++;
          room = (room << 1) - <i32>load<u32>(COUNT + (l << 2));
        }
        subSize = 1 << bits;
        if (next + subSize > capacity) return -1;
        subBase = next;
        next += subSize;
        store<u32>(table + (prefix << 2), F_SUB | (subBase << 16) | (bits << 8) | root);
      }
      const e = entryFor(kind, sym, len - root);
      for (let i = rev >> root; i < subSize; i += 1 << (len - root)) store<u32>(table + ((subBase + i) << 2), e);
    }
    code <<= 1;
  }
  return 0;
}
