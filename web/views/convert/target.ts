/**
 * What a conversion is asked to produce, as the Convert and Sparsify views
 * hold it: the output format and its `-o` options (catalogued in
 * lib/output-formats.ts), -c and -S; the presets, and the equivalent qemu-img
 * command line. Pure data and functions, no engine calls.
 */
import type { ConvertJob } from '../../lib/engine-protocol.ts';
import { shellWord } from '../../components/qemu-command.ts';
import { formatSpec, optionPairs, optionText, type OutputSettings } from '../../lib/output-formats.ts';

export interface TargetSettings extends OutputSettings {
  /** -c */
  compress: boolean;
  /** -S as typed (qemu's size syntax); empty for qemu-img's default, 4k. */
  sparse: string;
}

export interface Preset {
  id: string;
  label: string;
  /** Who wants it. */
  note: string;
  settings: TargetSettings;
}

const preset = (format: string, options: Record<string, string>, compress = false): TargetSettings => ({ format, options, extra: '', compress, sparse: '' });

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
  const o = new Map(optionPairs(s));
  if (s.format === 'vmdk' && o.get('subformat') === 'monolithicFlat') {
    return 'monolithicFlat is two files (a descriptor and its extent); a browser saves one file per conversion. Choose monolithicSparse or streamOptimized.';
  }
  if (s.compress && o.get('compression_type') === 'zstd') return 'Compressing with zstd is not supported yet: use compression_type zlib with -c.';
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

/**
 * The qemu-img command that does the same conversion, and a note where
 * qemu-img cannot say it in one command (vdisk's `azure` option).
 */
export function commandLine(s: TargetSettings, source: { name: string; format?: string; snapshot?: string }, output: string): { command: string; note?: string } {
  const pairs = optionPairs(s);
  const azure = pairs.some(([k, v]) => k === 'azure' && v === 'on');
  const o: [string, string][] = azure
    ? [...pairs.filter(([k]) => k !== 'azure' && k !== 'subformat' && k !== 'force_size'), ['subformat', 'fixed'], ['force_size', 'on']]
    : pairs;
  const words = ['qemu-img', 'convert', '-p'];
  if (source.format) words.push('-f', source.format);
  words.push('-O', s.format);
  if (o.length > 0) words.push('-o', optionText(o));
  if (formatSpec(s.format)?.compress && s.compress) words.push('-c');
  if (s.sparse.trim() !== '') words.push('-S', s.sparse.trim());
  if (source.snapshot !== undefined) words.push('-l', `snapshot.id=${source.snapshot}`);
  words.push(source.name, output);
  return {
    command: words.map(shellWord).join(' '),
    note: azure ? 'qemu-img has no azure option: resize the source to a whole number of MiB first (qemu-img resize).' : undefined,
  };
}
