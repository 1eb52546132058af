/**
 * The `-o` options of each output format as a small typed form (what
 * FormatOptions.svelte draws), and qemu-img's `-o a=1,b=2` text both ways.
 * The form offers the options the engine writes; anything else goes in the
 * free `-o` text, which the engine validates as qemu-img does.
 */

export interface OptionField {
  /** qemu's option name. */
  name: string;
  label: string;
  /** `choice` offers `choices`; `bool` offers on/off; `text` takes anything (a size, a number). */
  type: 'choice' | 'bool' | 'text';
  choices?: readonly string[];
  /** What qemu-img uses when the option is not given, shown as the unset choice. */
  fallback: string;
}

const sizes = (from: number, to: number) => {
  const out: string[] = [];
  for (let n = from; n <= to; n *= 2) out.push(n >= 1 << 20 ? `${n >> 20}M` : n >= 1024 ? `${n >> 10}k` : String(n));
  return out;
};

export const FORMAT_OPTIONS: Readonly<Record<string, readonly OptionField[]>> = {
  raw: [],
  qcow2: [
    { name: 'cluster_size', label: 'Cluster size', type: 'choice', choices: sizes(512, 2 << 20), fallback: '64k' },
    { name: 'compat', label: 'Compatibility', type: 'choice', choices: ['0.10', '1.1'], fallback: '1.1' },
    { name: 'refcount_bits', label: 'Refcount bits', type: 'choice', choices: ['1', '2', '4', '8', '16', '32', '64'], fallback: '16' },
    { name: 'extended_l2', label: 'Extended L2 (subclusters)', type: 'bool', fallback: 'off' },
    { name: 'preallocation', label: 'Preallocation', type: 'choice', choices: ['off', 'metadata', 'falloc', 'full'], fallback: 'off' },
    { name: 'lazy_refcounts', label: 'Lazy refcounts', type: 'bool', fallback: 'off' },
    { name: 'compression_type', label: 'Compression type', type: 'choice', choices: ['zlib', 'zstd'], fallback: 'zlib' },
  ],
  vmdk: [
    {
      name: 'subformat',
      label: 'Subformat',
      type: 'choice',
      choices: ['monolithicSparse', 'streamOptimized', 'monolithicFlat'],
      fallback: 'monolithicSparse',
    },
    { name: 'adapter_type', label: 'Adapter type', type: 'choice', choices: ['ide', 'buslogic', 'lsilogic', 'legacyESX'], fallback: 'ide' },
    { name: 'hwversion', label: 'Hardware version', type: 'text', fallback: '4' },
    { name: 'zeroed_grain', label: 'Zeroed grains', type: 'bool', fallback: 'off' },
  ],
  vpc: [
    { name: 'subformat', label: 'Subformat', type: 'choice', choices: ['dynamic', 'fixed'], fallback: 'dynamic' },
    { name: 'force_size', label: 'Force size (no CHS rounding)', type: 'bool', fallback: 'off' },
  ],
  vhdx: [
    { name: 'subformat', label: 'Subformat', type: 'choice', choices: ['dynamic', 'fixed'], fallback: 'dynamic' },
    { name: 'block_size', label: 'Block size', type: 'choice', choices: sizes(1 << 20, 256 << 20), fallback: 'auto' },
    { name: 'log_size', label: 'Log size', type: 'text', fallback: '1M' },
  ],
  vdi: [{ name: 'static', label: 'Static (fully allocated)', type: 'bool', fallback: 'off' }],
  qed: [
    { name: 'cluster_size', label: 'Cluster size', type: 'choice', choices: sizes(4096, 64 << 20), fallback: '64k' },
    { name: 'table_size', label: 'Table size (clusters)', type: 'text', fallback: '4' },
  ],
};

/** qemu-img's `-o` text as name/value pairs; a doubled comma is a comma in a value, a bare name means `on`. */
export function parseOptionText(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const part of text.trim().replace(/,,/g, '\0').split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    const key = (eq < 0 ? part : part.slice(0, eq)).trim().replace(/\0/g, ',');
    out.push([key, eq < 0 ? 'on' : part.slice(eq + 1).replace(/\0/g, ',')]);
  }
  return out;
}

/** Pairs back to `-o` text, doubling commas inside values. */
export const optionText = (pairs: readonly [string, string][]) => pairs.map(([k, v]) => `${k}=${v.replace(/,/g, ',,')}`).join(',');

/** The options the form says: its fields that are set, then the free text (a name given in both takes the text's value, as a later -o does). */
export function optionPairs(format: string, values: Readonly<Record<string, string>>, extra: string): [string, string][] {
  const pairs: [string, string][] = [];
  for (const f of FORMAT_OPTIONS[format] ?? []) {
    const v = values[`${format}.${f.name}`]?.trim();
    if (v) pairs.push([f.name, v]);
  }
  const more = parseOptionText(extra);
  return [...pairs.filter(([k]) => !more.some(([m]) => m === k)), ...more];
}
