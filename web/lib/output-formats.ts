/**
 * The one catalogue of output formats and their `-o` options, spelled as
 * qemu-img spells them and limited to the values the engine's writers accept
 * (engine/drivers/writers.ts and each writer's option parsing); anything else
 * goes in the free `-o` text, which the engine validates as qemu-img does.
 * Also qemu-img's `-o a=1,b=2` text both ways. Pure data, no engine calls.
 */

export interface OptionSpec {
  /** qemu's option name. */
  name: string;
  /** What the option does, for the label. */
  label: string;
  /** The values offered; the default is offered as an empty value. */
  values: readonly string[];
  /** Values only `measure` accepts (it sizes preallocation modes the writer refuses). */
  measureValues?: readonly string[];
  /** What qemu-img uses when the option is not given, shown for the empty value. */
  fallback: string;
}

export interface FormatSpec {
  name: string;
  label: string;
  /** File name extension of its files. */
  ext: string;
  options: readonly OptionSpec[];
  /** Whether -c applies. */
  compress: boolean;
}

/** The output's format and its `-o` options, as the forms hold them. */
export interface OutputSettings {
  format: string;
  /** `-o` values by option name; an empty or absent value leaves the format's default. */
  options: Record<string, string>;
  /** The free `-o` text, for options the form does not offer. */
  extra: string;
}

const onOff = ['on', 'off'] as const;

/** Powers of two from `from` to `to` bytes in qemu's size words (512, 4k, 1M). */
function sizes(from: number, to: number): string[] {
  const out: string[] = [];
  for (let n = from; n <= to; n *= 2) out.push(n >= 1 << 20 ? `${n / (1 << 20)}M` : n >= 1024 ? `${n / 1024}k` : String(n));
  return out;
}

export const FORMATS: readonly FormatSpec[] = [
  {
    name: 'qcow2',
    label: 'qcow2 (QEMU, OpenStack)',
    ext: 'qcow2',
    compress: true,
    options: [
      { name: 'cluster_size', label: 'Cluster size', values: sizes(512, 2 << 20), fallback: '64k' },
      { name: 'compat', label: 'qcow2 version', values: ['1.1', '0.10'], fallback: '1.1' },
      { name: 'compression_type', label: 'Codec of -c clusters', values: ['zlib', 'zstd'], fallback: 'zlib' },
      { name: 'lazy_refcounts', label: 'Lazy refcounts', values: onOff, fallback: 'off' },
      { name: 'extended_l2', label: 'Subclusters (extended L2)', values: onOff, fallback: 'off' },
      { name: 'refcount_bits', label: 'Refcount width (bits)', values: ['1', '2', '4', '8', '16', '32', '64'], fallback: '16' },
      { name: 'preallocation', label: 'Preallocation', values: ['off', 'metadata'], measureValues: ['falloc', 'full'], fallback: 'off' },
    ],
  },
  {
    name: 'vmdk',
    label: 'vmdk (VMware)',
    ext: 'vmdk',
    compress: false,
    options: [
      { name: 'subformat', label: 'Layout', values: ['monolithicSparse', 'streamOptimized', 'monolithicFlat'], fallback: 'monolithicSparse' },
      { name: 'adapter_type', label: 'Virtual disk controller', values: ['ide', 'lsilogic', 'buslogic', 'legacyESX'], fallback: 'ide' },
      { name: 'hwversion', label: 'Virtual hardware version', values: ['4', '6', '7', '10', '11', '14'], fallback: '4' },
      { name: 'zeroed_grain', label: 'Zeroed grains', values: onOff, fallback: 'off' },
    ],
  },
  {
    name: 'vpc',
    label: 'vpc (VHD: Hyper-V, Azure)',
    ext: 'vhd',
    compress: false,
    options: [
      { name: 'subformat', label: 'Layout', values: ['dynamic', 'fixed'], fallback: 'dynamic' },
      { name: 'force_size', label: 'Exact size, no CHS rounding', values: onOff, fallback: 'off' },
      { name: 'azure', label: 'vdisk only: fixed, size rounded up to a whole MiB', values: ['on'], fallback: 'off' },
    ],
  },
  {
    name: 'vhdx',
    label: 'vhdx (Hyper-V)',
    ext: 'vhdx',
    compress: false,
    options: [
      { name: 'subformat', label: 'Layout', values: ['dynamic', 'fixed'], fallback: 'dynamic' },
      { name: 'block_size', label: 'Payload block size', values: sizes(1 << 20, 256 << 20), fallback: 'by size' },
      { name: 'log_size', label: 'Log size', values: sizes(1 << 20, 64 << 20), fallback: '1M' },
    ],
  },
  {
    name: 'vdi',
    label: 'vdi (VirtualBox)',
    ext: 'vdi',
    compress: false,
    options: [{ name: 'static', label: 'Allocate every block', values: onOff, fallback: 'off' }],
  },
  {
    name: 'qed',
    label: 'qed',
    ext: 'qed',
    compress: false,
    options: [
      { name: 'cluster_size', label: 'Cluster size', values: sizes(4096, 64 << 20), fallback: '64k' },
      // A one-cluster table makes an image qemu cannot open, so the engine refuses 1.
      { name: 'table_size', label: 'Table size (clusters)', values: ['2', '4', '8', '16'], fallback: '4' },
    ],
  },
  { name: 'raw', label: 'raw', ext: 'img', compress: false, options: [] },
];

export const formatSpec = (name: string): FormatSpec | undefined => FORMATS.find((f) => f.name === name);

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

/**
 * The `-o` pairs the settings say: the format's options that are set, in its
 * order, then the free text (a name given in both takes the text's value, as
 * a later -o does).
 */
export function optionPairs(s: OutputSettings): [string, string][] {
  const set = (formatSpec(s.format)?.options ?? [])
    .filter((o) => (s.options[o.name] ?? '') !== '')
    .map((o): [string, string] => [o.name, s.options[o.name]!]);
  const more = parseOptionText(s.extra);
  return [...set.filter(([k]) => !more.some(([m]) => m === k)), ...more];
}
