/** `qemu-img map` output, JSON and human, printed exactly as qemu-img 7.2 prints it. */
import type { MapEntry } from '../ops/map.ts';
import { hexAlt } from './human.ts';

function jsonEntry(e: MapEntry): string {
  const off = e.offset !== undefined ? `, "offset": ${e.offset}` : '';
  return `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}${off}}`;
}

export function mapJson(entries: MapEntry[]): string {
  return '[' + entries.map(jsonEntry).join(',\n') + ']\n';
}

/** Only ranges with data at a known host offset are listed, as in qemu-img. */
export function mapHuman(entries: MapEntry[]): string {
  const col = (s: string) => s.padEnd(16);
  let out = col('Offset') + col('Length') + col('Mapped to') + 'File\n';
  for (const e of entries) {
    if (e.data && e.offset !== undefined) out += col(hexAlt(e.start)) + col(hexAlt(e.length)) + col(hexAlt(e.offset)) + e.filename + '\n';
  }
  return out;
}
