/**
 * Command-line parsing with getopt_long's rules, as qemu-img uses them:
 * clustered short options, `--long=value` or `--long value`, options and file
 * names in any order, `--` ends options.
 */
export class UsageError extends Error {}

export interface OptionSpec {
  /** getopt's short string: a letter per option, `:` after one that takes a value. */
  short: string;
  /** Long names; the value says whether it takes an argument and which key it sets. */
  long: Record<string, { arg: boolean; key: string }>;
}

export interface Parsed {
  /** Every option in order, keyed by its short letter or long key; flags have `true`. */
  opts: [string, string | true][];
  args: string[];
}

export function parseArgs(argv: string[], spec: OptionSpec): Parsed {
  const out: Parsed = { opts: [], args: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.args.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const def = spec.long[name];
      if (!def) throw new UsageError(`unrecognized option '${a}'`);
      if (!def.arg) {
        if (eq >= 0) throw new UsageError(`option '--${name}' doesn't allow an argument`);
        out.opts.push([def.key, true]);
      } else if (eq >= 0) out.opts.push([def.key, a.slice(eq + 1)]);
      else if (i + 1 < argv.length) out.opts.push([def.key, argv[++i]!]);
      else throw new UsageError(`option '--${name}' requires an argument`);
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j]!;
        const at = spec.short.indexOf(c);
        if (c === ':' || at < 0) throw new UsageError(`invalid option -- '${c}'`);
        if (spec.short[at + 1] !== ':') {
          out.opts.push([c, true]);
          continue;
        }
        if (j + 1 < a.length) out.opts.push([c, a.slice(j + 1)]);
        else if (i + 1 < argv.length) out.opts.push([c, argv[++i]!]);
        else throw new UsageError(`option requires an argument -- '${c}'`);
        break;
      }
      continue;
    }
    out.args.push(a);
  }
  return out;
}

/** The last value given for an option, as getopt loops overwrite. */
export function last(p: Parsed, key: string): string | undefined {
  let v: string | undefined;
  for (const [k, val] of p.opts) if (k === key && val !== true) v = val;
  return v;
}

export function has(p: Parsed, key: string): boolean {
  return p.opts.some(([k]) => k === key);
}

/** qemu's size syntax: plain bytes, or a number with k/K, M, G, T, P, E (powers of 1024). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKMGTPE]?)[bB]?$/.exec(text.trim());
  if (!m) throw new UsageError(`Invalid size '${text}'`);
  const exp = { '': 0, k: 1, K: 1, M: 2, G: 3, T: 4, P: 5, E: 6 }[m[2]!]!;
  const n = Number(m[1]) * 1024 ** exp;
  if (!Number.isSafeInteger(Math.round(n))) throw new UsageError(`Invalid size '${text}'`);
  return Math.round(n);
}
