/**
 * `info`: the facts qemu-img info reports about each layer, in qemu's QAPI
 * shape (ImageInfo), plus their human layout. `actual-size` is the file's
 * length: a browser cannot see how much of a file the host has allocated.
 */
import type { Layer, SnapshotInfo } from '../driver.ts';
import type { Opener } from '../io/opener.ts';
import type { QValue } from '../format/qemu-json.ts';
import { dumpQObject, localDateTime, sizeToStr, vmClock } from '../format/human.ts';

/** qemu's ImageInfo, keyed as qemu-img's JSON. */
export interface ImageInfo {
  [key: string]: QValue | undefined;
  'virtual-size': number;
  filename: string;
  format: string;
  'actual-size': number;
  'dirty-flag'?: boolean;
  'cluster-size'?: number;
  encrypted?: boolean;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  snapshots?: QValue[];
  'format-specific'?: QValue;
}

function snapshotJson(s: SnapshotInfo): QValue {
  return {
    id: s.id,
    name: s.name,
    'vm-state-size': s.vmStateSize,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
    'vm-clock-nsec': s.vmClockNsec % 1e9,
    icount: s.icount,
  };
}

/** The ImageInfo of one layer; `opener` resolves the full backing file name. */
export function layerInfo(layer: Layer, opener: Opener): ImageInfo {
  const facts = layer.facts();
  const info: ImageInfo = {
    'virtual-size': layer.size,
    filename: layer.source.name,
    format: layer.format,
    'actual-size': layer.source.size,
    'dirty-flag': facts.dirty,
    'cluster-size': facts.clusterSize,
    encrypted: facts.encrypted || undefined,
  };
  if (layer.backing) {
    info['backing-filename'] = layer.backing.name;
    info['full-backing-filename'] = opener.resolve(layer.backing.name, layer.source);
    info['backing-filename-format'] = layer.backing.format;
  }
  const snaps = layer.snapshots();
  if (snaps.length > 0) info.snapshots = snaps.map(snapshotJson);
  if (facts.formatSpecific) info['format-specific'] = facts.formatSpecific;
  return info;
}

function snapshotLine(s: SnapshotInfo): string {
  const clock = vmClock(s.vmClockNsec);
  return (
    s.id.padEnd(9) + ' ' + s.name.padEnd(16) + ' ' + sizeToStr(s.vmStateSize).padStart(8) +
    localDateTime(s.dateSec).padStart(20) + clock.padStart(13) + (s.icount === undefined ? '' : String(s.icount)).padStart(11)
  );
}

/** qemu-img info's human layout for one layer. */
export function humanInfo(info: ImageInfo, snapshots: SnapshotInfo[]): string {
  const out = [
    `image: ${info.filename}\n`,
    `file format: ${info.format}\n`,
    `virtual size: ${sizeToStr(info['virtual-size'])} (${info['virtual-size']} bytes)\n`,
    `disk size: ${sizeToStr(info['actual-size'])}\n`,
  ];
  if (info.encrypted) out.push('encrypted: yes\n');
  if (info['cluster-size'] !== undefined) out.push(`cluster_size: ${info['cluster-size']}\n`);
  if (info['dirty-flag']) out.push('cleanly shut down: no\n');
  const backing = info['backing-filename'];
  if (backing !== undefined) {
    const full = info['full-backing-filename'];
    out.push(`backing file: ${backing}${full !== undefined && full !== backing ? ` (actual path: ${full})` : ''}\n`);
    if (info['backing-filename-format'] !== undefined) out.push(`backing file format: ${info['backing-filename-format']}\n`);
  }
  if (snapshots.length > 0) {
    out.push('Snapshot list:\n');
    out.push('ID'.padEnd(10) + 'TAG'.padEnd(17) + 'VM SIZE'.padStart(8) + 'DATE'.padStart(20) + 'VM CLOCK'.padStart(13) + 'ICOUNT'.padStart(11) + '\n');
    for (const s of snapshots) out.push(snapshotLine(s) + '\n');
  }
  const spec = info['format-specific'];
  if (spec && typeof spec === 'object' && !Array.isArray(spec) && spec.data !== undefined) {
    out.push('Format specific information:\n');
    dumpQObject(spec.data, 1, out);
  }
  return out.join('');
}
