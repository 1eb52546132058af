/**
 * The settings that rewrite an image in its own format and layout, as far as
 * `qemu-img info` tells them: sparsify keeps the source's format unless the
 * user changes it. Formats the engine cannot write fall back to qcow2.
 */
import type { ImageInfo } from '../../lib/engine-protocol.ts';
import { formatSpec } from '../../lib/output-formats.ts';
import type { TargetSettings } from '../convert/target.ts';

const KIB = 1024;
const sizeWord = (n: number) => (n % (KIB * KIB) === 0 ? `${n / (KIB * KIB)}M` : `${n / KIB}k`);

export function sourceSettings(info: ImageInfo): TargetSettings {
  const spec = formatSpec(info.format) ?? formatSpec('qcow2')!;
  const options: Record<string, string> = {};
  const offered = (name: string, value: string) => spec.options.find((o) => o.name === name)?.values.includes(value);
  const fs = info['format-specific'];
  const data = fs && typeof fs === 'object' && !Array.isArray(fs) && fs.data && typeof fs.data === 'object' && !Array.isArray(fs.data) ? fs.data : {};
  if (spec.name === info.format) {
    const cluster = info['cluster-size'];
    if (cluster !== undefined && offered('cluster_size', sizeWord(cluster))) options.cluster_size = sizeWord(cluster);
    if (spec.name === 'qcow2' && typeof data.compat === 'string' && offered('compat', data.compat)) options.compat = data.compat;
    const createType = data['create-type'];
    // A flat source is two files, which a page cannot save: it becomes monolithicSparse.
    if (spec.name === 'vmdk' && typeof createType === 'string' && createType !== 'monolithicFlat' && offered('subformat', createType)) options.subformat = createType;
  }
  return { format: spec.name, options, extra: '', compress: false, sparse: '' };
}
