/** qemu's size syntax for `measure --size`: plain bytes, or a number with k/K, M, G, T, P, E (powers of 1024). */
const EXPONENT: Record<string, number> = { '': 0, k: 1, K: 1, M: 2, G: 3, T: 4, P: 5, E: 6 };

export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([kKMGTPE]?)[bB]?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Math.round(Number(m[1]) * 1024 ** EXPONENT[m[2]!]!);
  return Number.isSafeInteger(n) ? n : undefined;
}
