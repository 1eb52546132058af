/**
 * What a conversion is asked to produce, as the Convert and Sparsify views
 * hold it: the output format, its `-o` options spelled as qemu-img spells
 * them, -c and -S; the formats' option lists, the presets, and the equivalent
 * qemu-img command line. Pure data and functions, no engine calls.
 */
import type { ConvertJob } from '../../lib/engine-protocol.ts';

export interface TargetSettings {
  format: string;
  /** `-o` values by option name; an empty or absent value leaves the format's default. */
  options: Record<string, string>;
  /** -c */
  compress: boolean;
  /** -S as typed (qemu's size syntax); empty for qemu-img's default, 4k. */
  sparse: string;
}

export interface OptionSpec {
  name: string;
  /** What the option does, for the label. */
  hint: string;
  /** The values offered; the default is offered as an empty value. */
  values: readonly string[];
  /** Shown for the empty value. */
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

const onOff = ['on', 'off'] as const;

export const FORMATS: readonly FormatSpec[] = [
  {
    name: 'qcow2',
    label: 'qcow2 (QEMU, OpenStack)',
    ext: 'qcow2',
    compress: true,
    options: [
      { name: 'cluster_size', hint: 'cluster size', values: ['4k', '16k', '64k', '128k', '256k', '512k', '1M', '2M'], fallback: '64k' },
      { name: 'compat', hint: 'qcow2 version', values: ['1.1', '0.10'], fallback: '1.1' },
      { name: 'compression_type', hint: 'codec of -c clusters', values: ['zlib', 'zstd'], fallback: 'zlib' },
      { name: 'lazy_refcounts', hint: 'defer refcount updates', values: onOff, fallback: 'off' },
      { name: 'extended_l2', hint: 'subclusters', values: onOff, fallback: 'off' },
      { name: 'preallocation', hint: 'allocate metadata up front', values: ['off', 'metadata'], fallback: 'off' },
    ],
  },
  {
    name: 'vmdk',
    label: 'vmdk (VMware)',
    ext: 'vmdk',
    compress: false,
    options: [
      { name: 'subformat', hint: 'layout', values: ['monolithicSparse', 'streamOptimized', 'monolithicFlat'], fallback: 'monolithicSparse' },
      { name: 'adapter_type', hint: 'virtual disk controller', values: ['ide', 'lsilogic', 'buslogic', 'legacyESX'], fallback: 'ide' },
      { name: 'hwversion', hint: 'virtual hardware version', values: ['4', '6', '7', '10', '11', '14'], fallback: '4' },
    ],
  },
  {
    name: 'vpc',
    label: 'vpc (VHD: Hyper-V, Azure)',
    ext: 'vhd',
    compress: false,
    options: [
      { name: 'subformat', hint: 'layout', values: ['dynamic', 'fixed'], fallback: 'dynamic' },
      { name: 'force_size', hint: 'exact size, no CHS rounding', values: onOff, fallback: 'off' },
      { name: 'azure', hint: 'vdisk only: fixed, size rounded up to a whole MiB', values: ['on'], fallback: 'off' },
    ],
  },
  {
    name: 'vhdx',
    label: 'vhdx (Hyper-V)',
    ext: 'vhdx',
    compress: false,
    options: [
      { name: 'subformat', hint: 'layout', values: ['dynamic', 'fixed'], fallback: 'dynamic' },
      { name: 'block_size', hint: 'payload block size', values: ['1M', '2M', '8M', '16M', '32M', '64M', '128M', '256M'], fallback: 'by size' },
    ],
  },
  {
    name: 'vdi',
    label: 'vdi (VirtualBox)',
    ext: 'vdi',
    compress: false,
    options: [{ name: 'static', hint: 'allocate every block', values: onOff, fallback: 'off' }],
  },
  {
    name: 'qed',
    label: 'qed',
    ext: 'qed',
    compress: false,
    options: [{ name: 'cluster_size', hint: 'cluster size', values: ['4k', '16k', '64k', '256k', '1M'], fallback: '64k' }],
  },
  { name: 'raw', label: 'raw', ext: 'img', compress: false, options: [] },
];

export const formatSpec = (name: string): FormatSpec | undefined => FORMATS.find((f) => f.name === name);

export interface Preset {
  id: string;
  label: string;
  /** Who wants it. */
  note: string;
  settings: TargetSettings;
}

const preset = (format: string, options: Record<string, string>, compress = false): TargetSettings => ({ format, options, compress, sparse: '' });

export const PRESETS: readonly Preset[] = [
  { id: 'azure', label: 'Azure VHD', note: 'fixed VHD, size rounded up to a whole MiB', settings: preset('vpc', { subformat: 'fixed', force_size: 'on', azure: 'on' }) },
  { id: 'qcow2-c', label: 'Compressed qcow2', note: 'OpenStack, QEMU; smallest to ship', settings: preset('qcow2', { compat: '1.1' }, true) },
  { id: 'vmdk-stream', label: 'VMware streamOptimized', note: 'ESXi, AWS import', settings: preset('vmdk', { subformat: 'streamOptimized', adapter_type: 'lsilogic' }) },
  { id: 'vdi', label: 'VirtualBox VDI', note: 'dynamic VDI', settings: preset('vdi', {}) },
  { id: 'vhdx', label: 'Hyper-V VHDX', note: 'dynamic VHDX', settings: preset('vhdx', { subformat: 'dynamic' }) },
];

/** The preset the settings are exactly, if any. */
export function presetOf(s: TargetSettings): Preset | undefined {
  const key = (t: TargetSettings) => JSON.stringify([t.format, optionPairs(t), t.compress, t.sparse]);
  return PRESETS.find((p) => key(p.settings) === key(s));
}

/** The `-o` pairs that are set, in the format's order (options the format does not have are dropped). */
export function optionPairs(s: TargetSettings): [string, string][] {
  const spec = formatSpec(s.format);
  return (spec?.options ?? []).filter((o) => (s.options[o.name] ?? '') !== '').map((o): [string, string] => [o.name, s.options[o.name]!]);
}

/** qemu's size syntax (plain bytes, or k/M/G/T as powers of 1024); undefined when it is not one. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([kKMGT]?)[bB]?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Math.round(Number(m[1]) * 1024 ** ({ '': 0, k: 1, K: 1, M: 2, G: 3, T: 4 }[m[2]!] ?? 0));
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Why these settings cannot be converted in the browser, before anything is written; undefined when they can. */
export function refusal(s: TargetSettings): string | undefined {
  if (!formatSpec(s.format)) return `Writing the '${s.format}' format is not supported.`;
  if (s.sparse.trim() !== '' && parseSize(s.sparse) === undefined) return `-S wants a size such as 4k or 1M, not “${s.sparse}”.`;
  if (s.format === 'vmdk' && s.options.subformat === 'monolithicFlat') {
    return 'monolithicFlat is two files (a descriptor and its extent); a browser saves one file per conversion. Choose monolithicSparse or streamOptimized.';
  }
  if (s.compress && s.options.compression_type === 'zstd') return 'Compressing with zstd is not supported yet: use compression_type zlib with -c.';
  return undefined;
}

/** What the worker is asked to do. */
export function jobOf(s: TargetSettings, source: { name: string; format?: string; snapshot?: string }): ConvertJob {
  const spec = formatSpec(s.format);
  const sparse = s.sparse.trim() === '' ? undefined : parseSize(s.sparse);
  return { ...source, outFormat: s.format, options: optionPairs(s), compress: !!spec?.compress && s.compress, sparseSize: sparse };
}

/** The output's file name: the source's base name with the format's extension. */
export function outputName(sourcePath: string, format: string, suffix = ''): string {
  const base = sourcePath.split('/').pop()!.replace(/\.[^.]*$/, '') || 'disk';
  return `${base}${suffix}.${formatSpec(format)?.ext ?? format}`;
}

const shellWord = (s: string) => (/^[\w./+@:=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/**
 * The qemu-img command that does the same conversion, and a note where
 * qemu-img cannot say it in one command (vdisk's `azure` option).
 */
export function commandLine(s: TargetSettings, source: { name: string; format?: string; snapshot?: string }, output: string): { command: string; note?: string } {
  const pairs = optionPairs(s);
  const azure = pairs.some(([k, v]) => k === 'azure' && v === 'on');
  const o = azure ? [...pairs.filter(([k]) => k !== 'azure' && k !== 'subformat' && k !== 'force_size'), ['subformat', 'fixed'], ['force_size', 'on']] : pairs;
  const words = ['qemu-img', 'convert', '-p'];
  if (source.format) words.push('-f', source.format);
  words.push('-O', s.format);
  if (o.length > 0) words.push('-o', o.map(([k, v]) => `${k}=${v}`).join(','));
  if (formatSpec(s.format)?.compress && s.compress) words.push('-c');
  if (s.sparse.trim() !== '') words.push('-S', s.sparse.trim());
  if (source.snapshot !== undefined) words.push('-l', `snapshot.id=${source.snapshot}`);
  words.push(source.name, output);
  return {
    command: words.map(shellWord).join(' '),
    note: azure ? 'qemu-img has no azure option: resize the source to a whole number of MiB first (qemu-img resize).' : undefined,
  };
}
