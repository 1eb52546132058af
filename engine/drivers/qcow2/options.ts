/**
 * qcow2 creation options (`-o`), parsed and checked as qemu-img 7.2 does.
 * `convert` creates through qemu's QAPI path and `measure` parses the options
 * itself, so the two accept slightly different spellings and word their
 * errors differently; `purpose` picks which.
 */
import { OptionError, OptionValueError } from '../../errors.ts';
import { boolOption, sizeOption, type CreateOptions } from '../../writer.ts';
import * as L from './layout.ts';

export type Preallocation = 'off' | 'metadata' | 'falloc' | 'full';

export interface Qcow2Params {
  version: 2 | 3;
  clusterBits: number;
  refcountOrder: number;
  extendedL2: boolean;
  lazyRefcounts: boolean;
  compressionType: number;
  preallocation: Preallocation;
}

/**
 * The `-o` names the writer takes: qemu's qcow2 options that vdisk writes,
 * and the host-file options `nocow` and `extent_size_hint`, which only tune
 * the host file system and are accepted and left alone.
 */
export const QCOW2_OPTION_NAMES = [
  'size',
  'compat',
  'backing_file',
  'backing_fmt',
  'cluster_size',
  'preallocation',
  'lazy_refcounts',
  'refcount_bits',
  'compression_type',
  'extended_l2',
  'nocow',
  'extent_size_hint',
] as const;

/** Further names qemu-img knows for qcow2: an external data file and encryption, which vdisk does not write. */
export const QCOW2_UNWRITTEN_NAMES = [
  'data_file',
  'data_file_raw',
  'encryption',
  'encrypt.format',
  'encrypt.key-secret',
  'encrypt.cipher-alg',
  'encrypt.cipher-mode',
  'encrypt.ivgen-alg',
  'encrypt.ivgen-hash-alg',
  'encrypt.hash-alg',
  'encrypt.iter-time',
];

/** qemu's default cluster size, with and without extended L2 entries alike. */
const DEFAULT_CLUSTER_SIZE = 65536;
/** "Extended L2 Entries": subclusters need clusters of at least 16 KiB. */
const MIN_EXTL2_CLUSTER_SIZE = 16384;
const PREALLOCATIONS: readonly Preallocation[] = ['off', 'metadata', 'falloc', 'full'];

function numberOption(opts: CreateOptions, name: string, fallback: number): number {
  const text = opts.options.get(name);
  if (text === undefined) return fallback;
  if (!/^(\d+|0[xX][0-9a-fA-F]+)$/.test(text.trim())) throw new OptionError(`Parameter '${name}' expects a number`);
  return Number(text.trim());
}

const isPowerOfTwo = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/**
 * Parses and validates the options. `create` is what `convert` checks before
 * writing anything; `measure` is qemu-img measure's more lenient parse (it
 * ignores the compression type and the compat of lazy refcounts and
 * extended L2 entries).
 */
export function parseQcow2Options(opts: CreateOptions, purpose: 'create' | 'measure'): Qcow2Params {
  const create = purpose === 'create';
  for (const [name, value] of opts.options) {
    const ours = (QCOW2_OPTION_NAMES as readonly string[]).includes(name);
    if (!ours && !QCOW2_UNWRITTEN_NAMES.includes(name)) throw new OptionError(`Invalid parameter '${name}'`);
    // Measuring ignores a data file and qcow's old encryption as qemu does, but a LUKS header would add to the size.
    const measurable = !create && (name !== 'encrypt.format' || value !== 'luks');
    if (!ours && !measurable) throw new OptionError(`The qcow2 option '${name}' is not supported`);
  }
  const extendedL2 = boolOption(opts, 'extended_l2') ?? false;
  const lazyRefcounts = boolOption(opts, 'lazy_refcounts') ?? false;
  boolOption(opts, 'nocow');
  const refcountBits = numberOption(opts, 'refcount_bits', 16);

  const clusterSize = sizeOption(opts, 'cluster_size', DEFAULT_CLUSTER_SIZE);
  if (!isPowerOfTwo(clusterSize) || clusterSize < 2 ** L.MIN_CLUSTER_BITS || clusterSize > 2 ** L.MAX_CLUSTER_BITS) {
    throw new OptionValueError(`Cluster size must be a power of two between ${2 ** L.MIN_CLUSTER_BITS} and ${2 ** (L.MAX_CLUSTER_BITS - 10)}k`);
  }

  const compat = opts.options.get('compat') ?? '1.1';
  let version: 2 | 3;
  if (compat === '0.10' || (create && compat === 'v2')) version = 2;
  else if (compat === '1.1' || (create && compat === 'v3')) version = 3;
  else if (create) throw new OptionValueError(`Parameter 'version' does not accept value '${compat}'`);
  else throw new OptionError(`Invalid compatibility level: '${compat}'`);

  const preallocation = (opts.options.get('preallocation') ?? 'off') as Preallocation;
  if (!PREALLOCATIONS.includes(preallocation)) {
    throw new OptionValueError(create ? `Parameter 'preallocation' does not accept value '${preallocation}'` : `invalid parameter value: ${preallocation}`);
  }

  const compressionName = opts.options.get('compression_type') ?? 'zlib';
  let compressionType = L.COMPRESSION_ZLIB;
  if (create) {
    if (compressionName === 'zstd') compressionType = L.COMPRESSION_ZSTD;
    else if (compressionName !== 'zlib') throw new OptionValueError(`Parameter 'compression-type' does not accept value '${compressionName}'`);
  }

  const useV3 = create ? 'use version=v3 or greater' : 'use compat=1.1 or greater';
  if (extendedL2) {
    if (create && version < 3) {
      throw new OptionValueError(`Extended L2 entries are only supported with compatibility level 1.1 and above (${useV3})`);
    }
    if (clusterSize < MIN_EXTL2_CLUSTER_SIZE) {
      throw new OptionValueError(`Extended L2 entries are only supported with cluster sizes of at least ${MIN_EXTL2_CLUSTER_SIZE} bytes`);
    }
  }
  if (!isPowerOfTwo(refcountBits) || refcountBits > 64) {
    throw new OptionValueError('Refcount width must be a power of two and may not exceed 64 bits');
  }
  if (version < 3 && refcountBits !== 16) {
    throw new OptionValueError(`Different refcount widths than 16 bits require compatibility level 1.1 or above (${useV3})`);
  }
  if (create && opts.backing && preallocation !== 'off' && !extendedL2) {
    throw new OptionValueError('Backing file and preallocation can only be used at the same time if extended_l2 is on');
  }
  if (create && version < 3 && lazyRefcounts) {
    throw new OptionValueError(`Lazy refcounts only supported with compatibility level 1.1 and above (${useV3})`);
  }
  if (create && version < 3 && compressionType !== L.COMPRESSION_ZLIB) {
    throw new OptionValueError(`Non-zlib compression type is only supported with compatibility level 1.1 and above (${useV3})`);
  }

  return {
    version,
    clusterBits: Math.log2(clusterSize),
    refcountOrder: Math.log2(refcountBits),
    extendedL2,
    lazyRefcounts,
    compressionType,
    preallocation,
  };
}
