/**
 * Deterministic mutations of real images: bit flips, 4- and 8-byte fields set
 * to 0, all-ones or huge values, and truncation — half of them aimed at the
 * first 64 KiB (headers and first tables), half anywhere in the file; with
 * metadata ranges given, a third each in them, the first 64 KiB, anywhere.
 */

/** A small seeded PRNG (mulberry32), so a failing mutant can be made again from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIELD_VALUES = [0n, 0xffffffffn, 0xffffffffffffffffn, 0x7fffffffn, 0x4000000000000000n, 0x100000000n, 1n];

export interface Mutation {
  bytes: Uint8Array;
  what: string;
}

/**
 * `focus` lists metadata ranges [start, end) of the file (tables deep in it,
 * a log): when given, a third of the mutations land in one of them.
 */
export function mutate(original: Uint8Array, seed: number, focus: readonly [number, number][] = []): Mutation {
  const rnd = prng(seed);
  const bytes = original.slice();
  let at: number;
  const pick = rnd();
  if (focus.length > 0 && pick < 1 / 3) {
    const [start, end] = focus[Math.floor(rnd() * focus.length)]!;
    at = Math.min(bytes.length - 1, start + Math.floor(rnd() * Math.max(1, end - start)));
  } else {
    const headers = focus.length > 0 ? pick < 2 / 3 : pick < 0.5;
    const span = headers ? Math.min(bytes.length, 65536) : bytes.length;
    at = Math.floor(rnd() * Math.max(1, span));
  }
  const kind = Math.floor(rnd() * 4);
  const view = new DataView(bytes.buffer);
  if (kind === 0) {
    const bit = Math.floor(rnd() * 8);
    if (at < bytes.length) bytes[at]! ^= 1 << bit;
    return { bytes, what: `flip bit ${bit} at ${at}` };
  }
  if (kind === 1 || kind === 2) {
    const width = kind === 1 ? 4 : 8;
    const off = at - (at % width);
    const value = FIELD_VALUES[Math.floor(rnd() * FIELD_VALUES.length)]!;
    const little = rnd() < 0.5;
    if (off + width <= bytes.length) {
      if (width === 4) view.setUint32(off, Number(value & 0xffffffffn), little);
      else view.setBigUint64(off, value, little);
    }
    return { bytes, what: `${width}-byte field at ${off} = ${value} (${little ? 'LE' : 'BE'})` };
  }
  const length = Math.floor(rnd() * bytes.length);
  return { bytes: bytes.subarray(0, length), what: `truncate to ${length}` };
}
