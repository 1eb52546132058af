// Raw deflate (RFC 1951) and zlib (RFC 1950) decoding into a caller-given
// region that bounds the output: qcow2 and qcow compressed clusters, VMDK
// grains. Memory is owned by the host, which places the input and the output
// region above `heapBase()`; nothing here allocates beyond the static tables.
// Built with SIMD (16-byte match copies) and without.
//
// Results: the number of bytes produced, or a negative error code (worded by
// engine/kernels/inflate.ts, which keeps the same numbers).
//
// The bounds follow zlib's inflate as qemu calls it (one call, all output at
// once): decoding stops the moment the output is full, so a stream that goes
// on is accepted; when the output fills exactly at the end of a symbol, the
// next symbol (and any block headers before it) is still read, and a corrupt
// one there is an error, while input that runs out there is not.

import { buildTable, F_BAD, F_EOB, F_LIT, F_SUB, KIND_CODELEN, KIND_DIST, KIND_LITLEN } from './huffman';

// @ts-ignore: decorator
@inline const SIMD = ASC_FEATURE_SIMD;

const ERR_TRUNCATED: i32 = -1;
const ERR_BLOCK_TYPE: i32 = -2;
const ERR_STORED_LENGTH: i32 = -3;
const ERR_COUNTS: i32 = -4;
const ERR_CODELEN_SET: i32 = -5;
const ERR_REPEAT: i32 = -6;
const ERR_NO_END_OF_BLOCK: i32 = -7;
const ERR_LITLEN_SET: i32 = -8;
const ERR_DIST_SET: i32 = -9;
const ERR_LITLEN_CODE: i32 = -10;
const ERR_DIST_CODE: i32 = -11;
const ERR_DIST_TOO_FAR: i32 = -12;
const ERR_ZLIB_HEADER: i32 = -13;
const ERR_ZLIB_DICTIONARY: i32 = -14;

// Root index bits: most literal/length codes are 10 bits or shorter, most
// distance codes 8 or shorter; longer ones go through a sub-table.
const LIT_ROOT: u32 = 10;
const DIST_ROOT: u32 = 8;
const LIT_MASK: u32 = (1 << LIT_ROOT) - 1;
const DIST_MASK: u32 = (1 << DIST_ROOT) - 1;
// Room for the root and every sub-table a valid code can need (well above the
// worst cases of 286 symbols over 15 bits and 30 symbols over 15 bits).
const LIT_CAP: u32 = 4096;
const DIST_CAP: u32 = 2048;

// A symbol writes at most 258 bytes, and match copies run up to 15 bytes past
// their end; the fast loop runs only while that much room remains.
const FAST_OUT: usize = 288;

const DYN_LIT = memory.data(4 * LIT_CAP, 64);
const DYN_DIST = memory.data(4 * DIST_CAP, 64);
const FIX_LIT = memory.data(4 << LIT_ROOT, 64);
const FIX_DIST = memory.data(4 << DIST_ROOT, 64);
const CL_TABLE = memory.data(4 * 128, 64);
// Code lengths of one block: up to 286 literal/length and 30 distance codes.
const LENS = memory.data(320, 16);
const CL_LENS = memory.data(20, 16);
// The order code-length code lengths are sent in (3.2.7).
const CL_ORDER = memory.data<u8>([16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]);

let fixedReady = false;

/** Where the host may start placing data: everything below is this module's. */
export function heapBase(): usize {
  return __heap_base;
}

/** The fixed codes (3.2.6), built once. */
function buildFixed(): void {
  memory.fill(LENS, 8, 144);
  memory.fill(LENS + 144, 9, 112);
  memory.fill(LENS + 256, 7, 24);
  memory.fill(LENS + 280, 8, 8);
  buildTable(LENS, 288, FIX_LIT, LIT_ROOT, 1 << LIT_ROOT, KIND_LITLEN);
  memory.fill(LENS, 5, 32);
  buildTable(LENS, 32, FIX_DIST, DIST_ROOT, 1 << DIST_ROOT, KIND_DIST);
  fixedReady = true;
}

// The bit reader of the block-header parser. The symbol loops keep the same
// state in locals, handed over around each header.
let gIp: usize = 0;
let gIe: usize = 0;
let gBb: u64 = 0;
let gBc: u32 = 0;

/**
 * Tops the bit buffer up to at least 56 bits. Eight bytes at a time while
 * eight remain; then byte by byte, counting zero bytes past the end of the
 * input, so that reading them is noticed afterwards (see `overrun`) rather
 * than checked on every bit.
 */
// @ts-ignore: decorator
@inline function refill(): void {
  if (gIp + 8 <= gIe) {
    gBb |= load<u64>(gIp) << <u64>gBc;
    gIp += <usize>((63 - gBc) >> 3);
    gBc |= 56;
  } else {
    while (gBc < 56) {
      if (gIp < gIe) gBb |= <u64>load<u8>(gIp) << <u64>gBc;
      gIp++;
      gBc += 8;
    }
  }
}

// @ts-ignore: decorator
@inline function bits(n: u32): u32 {
  const v = <u32>gBb & ((1 << n) - 1);
  gBb >>= <u64>n;
  gBc -= n;
  return v;
}

/** True when bits past the end of the input were consumed: of `ip - ie` counted zero bytes, fewer than `bc` bits are left. */
// @ts-ignore: decorator
@inline function overrun(ip: usize, ie: usize, bc: u32): bool {
  return ip > ie && (ip - ie) << 3 > <usize>bc;
}

/** Input ran out: fine when the output is already full (qemu accepts it), else an error. */
// @ts-ignore: decorator
@inline function truncated(op: usize, oe: usize, outLen: usize): i32 {
  return op == oe ? <i32>outLen : ERR_TRUNCATED;
}

/** Reads a dynamic block's code lengths (3.2.7) and builds its two tables; 0 or an error code. */
function readDynamic(): i32 {
  refill();
  const hlit = bits(5) + 257;
  const hdist = bits(5) + 1;
  const hclen = bits(4) + 4;
  if (hlit > 286 || hdist > 30) return ERR_COUNTS;
  memory.fill(CL_LENS, 0, 19);
  for (let i: u32 = 0; i < hclen; i++) {
    refill();
    store<u8>(CL_LENS + <usize>load<u8>(CL_ORDER + i), <u8>bits(3));
  }
  if (buildTable(CL_LENS, 19, CL_TABLE, 7, 128, KIND_CODELEN) < 0) return ERR_CODELEN_SET;
  const total = hlit + hdist;
  let i: u32 = 0;
  while (i < total) {
    refill();
    const e = load<u32>(CL_TABLE + ((<usize>gBb & 127) << 2));
    bits(e & 31);
    const sym = e >> 16;
    if (sym < 16) {
      store<u8>(LENS + i, <u8>sym);
      i++;
      continue;
    }
    let value: u8 = 0;
    let repeat: u32;
    if (sym == 16) {
      if (i == 0) return ERR_REPEAT;
      value = load<u8>(LENS + i - 1);
      repeat = 3 + bits(2);
    } else if (sym == 17) {
      repeat = 3 + bits(3);
    } else {
      repeat = 11 + bits(7);
    }
    if (i + repeat > total) return ERR_REPEAT;
    memory.fill(LENS + i, value, repeat);
    i += repeat;
  }
  if (load<u8>(LENS + 256) == 0) return ERR_NO_END_OF_BLOCK;
  if (buildTable(LENS, hlit, DYN_LIT, LIT_ROOT, LIT_CAP, KIND_LITLEN) < 0) return ERR_LITLEN_SET;
  if (buildTable(LENS + hlit, hdist, DYN_DIST, DIST_ROOT, DIST_CAP, KIND_DIST) < 0) return ERR_DIST_SET;
  return 0;
}

/**
 * Copies a match of `len` bytes from `dist` back, overlapping as the format
 * means (a short distance repeats its pattern), in whole words: it may write
 * up to 15 bytes past the end, which the fast loop leaves room for.
 */
// @ts-ignore: decorator
@inline function copyMatch(op: usize, dist: usize, len: usize): usize {
  let src = op - dist;
  const end = op + len;
  if (dist >= 16) {
    if (SIMD) {
      do {
        v128.store(op, v128.load(src));
        op += 16;
        src += 16;
      } while (op < end);
    } else {
      do {
        store<u64>(op, load<u64>(src));
        store<u64>(op, load<u64>(src, 8), 8);
        op += 16;
        src += 16;
      } while (op < end);
    }
  } else if (dist >= 8) {
    do {
      store<u64>(op, load<u64>(src));
      op += 8;
      src += 8;
    } while (op < end);
  } else if (dist == 1) {
    if (SIMD) {
      const v = i8x16.splat(load<u8>(src));
      do {
        v128.store(op, v);
        op += 16;
      } while (op < end);
    } else {
      const v = <u64>load<u8>(src) * 0x0101010101010101;
      do {
        store<u64>(op, v);
        op += 8;
      } while (op < end);
    }
  } else {
    // Periods 2-7: the first 8 bytes one by one; after them every byte also
    // equals the one a whole number of periods (at least 8) back, so words can follow.
    const head = len < 8 ? len : 8;
    for (let i: usize = 0; i < head; i++) store<u8>(op + i, load<u8>(src + i));
    if (len > 8) {
      let period = dist;
      while (period < 8) period += dist;
      op += 8;
      src = op - period;
      do {
        store<u64>(op, load<u64>(src));
        op += 8;
        src += 8;
      } while (op < end);
    }
  }
  return end;
}

/**
 * Decodes the raw deflate stream of `inLen` bytes at `inPtr` into the
 * `outLen` bytes at `outPtr`. Returns the bytes produced (fewer than `outLen`
 * when the stream ends first) or a negative error code.
 */
export function inflate(inPtr: usize, inLen: usize, outPtr: usize, outLen: usize): i32 {
  if (!fixedReady) buildFixed();
  let ip = inPtr;
  const ie = inPtr + inLen;
  let op = outPtr;
  const oe = outPtr + outLen;
  // The fast loop's bounds; zero when a region is too small for it (data lies above heapBase(), so no pointer is that low).
  const ieFast: usize = inLen >= 8 ? ie - 8 : 0;
  const oeFast: usize = outLen >= FAST_OUT ? oe - FAST_OUT : 0;
  let bb: u64 = 0;
  let bc: u32 = 0;
  let last: u32 = 0;
  while (last == 0) {
    // Block header (3.2.3): BFINAL, then BTYPE.
    gIp = ip;
    gIe = ie;
    gBb = bb;
    gBc = bc;
    refill();
    last = bits(1);
    const type = bits(2);
    ip = gIp;
    bb = gBb;
    bc = gBc;
    if (overrun(ip, ie, bc)) return truncated(op, oe, outLen);

    if (type == 0) {
      // Stored (3.2.4): skip to a byte boundary, hand back the whole bytes the
      // bit buffer holds, then LEN and its complement NLEN.
      const drop = bc & 7;
      bb >>= <u64>drop;
      bc -= drop;
      ip -= <usize>(bc >> 3);
      bb = 0;
      bc = 0;
      if (ip + 4 > ie) return truncated(op, oe, outLen);
      const len = <usize>load<u16>(ip);
      const nlen = <usize>load<u16>(ip, 2);
      ip += 4;
      if (len != (nlen ^ 0xffff)) return ERR_STORED_LENGTH;
      if (len == 0) continue;
      if (op == oe) return <i32>outLen;
      let n = len;
      if (n > ie - ip) n = ie - ip;
      if (n > oe - op) n = oe - op;
      memory.copy(op, ip, n);
      op += n;
      ip += n;
      if (n < len) return truncated(op, oe, outLen);
      continue;
    }

    let lt: usize;
    let dt: usize;
    if (type == 1) {
      lt = FIX_LIT;
      dt = FIX_DIST;
    } else if (type == 2) {
      const r = readDynamic();
      ip = gIp;
      bb = gBb;
      bc = gBc;
      if (overrun(ip, ie, bc)) return truncated(op, oe, outLen);
      if (r < 0) return r;
      lt = DYN_LIT;
      dt = DYN_DIST;
    } else {
      return ERR_BLOCK_TYPE;
    }

    // The block's symbols (3.2.5) up to its end-of-block code.
    let done = false;
    while (true) {
      // Fast loop: 8 input bytes readable, room for a whole match and its
      // overrun. One refill gives at least 56 bits, enough for a length and a
      // distance with their extra bits (15 + 5 + 15 + 13). The next entry is
      // looked up before the refill where enough bits are left (after a
      // literal: 56 - 15), so the lookup need not wait for the refill.
      if (ip <= ieFast && op <= oeFast) {
        bb |= load<u64>(ip) << <u64>bc;
        ip += <usize>((63 - bc) >> 3);
        bc |= 56;
        let e = load<u32>(lt + (<usize>(<u32>bb & LIT_MASK) << 2));
        while (true) {
          if (e & F_SUB) {
            bb >>= <u64>LIT_ROOT;
            bc -= LIT_ROOT;
            e = load<u32>(lt + (<usize>((e >> 16) + (<u32>bb & ((1 << ((e >> 8) & 15)) - 1))) << 2));
          }
          let n = e & 31;
          bb >>= <u64>n;
          bc -= n;
          if (e & F_LIT) {
            store<u8>(op, <u8>(e >> 16));
            op++;
            e = load<u32>(lt + (<usize>(<u32>bb & LIT_MASK) << 2));
            if (ip > ieFast || op > oeFast) break;
            bb |= load<u64>(ip) << <u64>bc;
            ip += <usize>((63 - bc) >> 3);
            bc |= 56;
            continue;
          }
          if (e & (F_EOB | F_BAD)) {
            if (e & F_BAD) return ERR_LITLEN_CODE;
            done = true;
            break;
          }
          let x = (e >> 8) & 15;
          const len = (e >> 16) + (<u32>bb & ((1 << x) - 1));
          bb >>= <u64>x;
          bc -= x;
          e = load<u32>(dt + (<usize>(<u32>bb & DIST_MASK) << 2));
          if (e & F_SUB) {
            bb >>= <u64>DIST_ROOT;
            bc -= DIST_ROOT;
            e = load<u32>(dt + (<usize>((e >> 16) + (<u32>bb & ((1 << ((e >> 8) & 15)) - 1))) << 2));
          }
          n = e & 31;
          bb >>= <u64>n;
          bc -= n;
          if (e & F_BAD) return ERR_DIST_CODE;
          x = (e >> 8) & 15;
          const dist = (e >> 16) + (<u32>bb & ((1 << x) - 1));
          bb >>= <u64>x;
          bc -= x;
          if (<usize>dist > op - outPtr) return ERR_DIST_TOO_FAR;
          op = copyMatch(op, <usize>dist, <usize>len);
          if (ip > ieFast || op > oeFast) break;
          bb |= load<u64>(ip) << <u64>bc;
          ip += <usize>((63 - bc) >> 3);
          bc |= 56;
          e = load<u32>(lt + (<usize>(<u32>bb & LIT_MASK) << 2));
        }
      }
      if (done) break;

      // One symbol near the end of the input or the output, checking each step.
      if (ip + 8 <= ie) {
        bb |= load<u64>(ip) << <u64>bc;
        ip += <usize>((63 - bc) >> 3);
        bc |= 56;
      } else {
        while (bc < 56) {
          if (ip < ie) bb |= <u64>load<u8>(ip) << <u64>bc;
          ip++;
          bc += 8;
        }
      }
      let e = load<u32>(lt + (<usize>(<u32>bb & LIT_MASK) << 2));
      if (e & F_SUB) {
        bb >>= <u64>LIT_ROOT;
        bc -= LIT_ROOT;
        e = load<u32>(lt + (<usize>((e >> 16) + (<u32>bb & ((1 << ((e >> 8) & 15)) - 1))) << 2));
      }
      let n = e & 31;
      bb >>= <u64>n;
      bc -= n;
      if (overrun(ip, ie, bc)) return truncated(op, oe, outLen);
      if (e & F_LIT) {
        if (op == oe) return <i32>outLen;
        store<u8>(op, <u8>(e >> 16));
        op++;
        continue;
      }
      if (e & F_EOB) break;
      if (e & F_BAD) return ERR_LITLEN_CODE;
      let x = (e >> 8) & 15;
      const len = <usize>((e >> 16) + (<u32>bb & ((1 << x) - 1)));
      bb >>= <u64>x;
      bc -= x;
      e = load<u32>(dt + (<usize>(<u32>bb & DIST_MASK) << 2));
      if (e & F_SUB) {
        bb >>= <u64>DIST_ROOT;
        bc -= DIST_ROOT;
        e = load<u32>(dt + (<usize>((e >> 16) + (<u32>bb & ((1 << ((e >> 8) & 15)) - 1))) << 2));
      }
      n = e & 31;
      bb >>= <u64>n;
      bc -= n;
      if (e & F_BAD) return overrun(ip, ie, bc) ? truncated(op, oe, outLen) : ERR_DIST_CODE;
      x = (e >> 8) & 15;
      const dist = <usize>((e >> 16) + (<u32>bb & ((1 << x) - 1)));
      bb >>= <u64>x;
      bc -= x;
      if (overrun(ip, ie, bc)) return truncated(op, oe, outLen);
      if (op == oe) return <i32>outLen;
      if (dist > op - outPtr) return ERR_DIST_TOO_FAR;
      const room = oe - op;
      const take = len < room ? len : room;
      for (let i: usize = 0; i < take; i++) store<u8>(op + i, load<u8>(op + i - dist));
      op += take;
      if (take < len) return <i32>outLen;
    }
  }
  return <i32>(op - outPtr);
}

/**
 * zlib (RFC 1950): checks the two-byte header (method 8, a window of at most
 * 32 KiB, the check bits, no preset dictionary), then inflates the deflate
 * data with the same bounds. The Adler-32 trailer is not verified: the output
 * bound may stop decoding before the stream ends, as it does for qemu's
 * compressed clusters.
 */
export function inflateZlib(inPtr: usize, inLen: usize, outPtr: usize, outLen: usize): i32 {
  if (inLen < 2) return ERR_TRUNCATED;
  const cmf = <u32>load<u8>(inPtr);
  const flg = <u32>load<u8>(inPtr, 1);
  if ((cmf & 15) != 8 || cmf >> 4 > 7 || ((cmf << 8) | flg) % 31 != 0) return ERR_ZLIB_HEADER;
  if (flg & 0x20) return ERR_ZLIB_DICTIONARY;
  return inflate(inPtr + 2, inLen - 2, outPtr, outLen);
}
