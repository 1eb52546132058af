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

/**
 * The human table lists ranges with data at a host offset. Data without one
 * (compressed clusters) cannot be shown in it: qemu-img stops there with an
 * error, and so does this, returning the table so far and the message.
 */
export function mapHuman(entries: MapEntry[]): { text: string; error?: string } {
  const col = (s: string) => s.padEnd(16);
  let text = col('Offset') + col('Length') + col('Mapped to') + 'File\n';
  for (const e of entries) {
    if (e.data && e.offset === undefined) return { text, error: 'File contains external, encrypted or compressed clusters.' };
    if (e.data && !e.zero) text += col(hexAlt(e.start)) + col(hexAlt(e.length)) + col(hexAlt(e.offset ?? 0)) + e.filename + '\n';
  }
  return { text };
}
