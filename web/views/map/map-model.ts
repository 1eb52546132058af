/**
 * The Map view's arithmetic, kept apart from drawing: what kind a range is,
 * finding the range at an offset in the packed columns, binning ranges into
 * the cells of the picture, the colours of kinds and layers, and the map as
 * `qemu-img map` would print it.
 */
import { MAP_COMPRESSED, MAP_DATA, MAP_PRESENT, MAP_ZERO, type MapData } from '../../worker/map-data.ts';
import type { MapEntry } from '../../../engine/ops/map.ts';

export type Kind = 'data' | 'compressed' | 'zero' | 'unallocated';

/** Order of importance inside one cell: a cell holding any data shows as data. */
const KINDS: readonly Kind[] = ['unallocated', 'zero', 'data', 'compressed'];

export function kindOf(flags: number): Kind {
  if (!(flags & MAP_PRESENT)) return 'unallocated';
  if (flags & MAP_ZERO) return 'zero';
  return flags & MAP_COMPRESSED ? 'compressed' : 'data';
}

export const KIND_LABEL: Record<Kind, string> = {
  data: 'Data',
  compressed: 'Compressed data',
  zero: 'Zeros',
  unallocated: 'Unallocated (reads as zeros)',
};

/** Index of the first entry that ends after `offset` (entries.length when none does). */
export function firstEnding(d: MapData, offset: number): number {
  let lo = 0;
  let hi = d.start.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (d.start[mid]! + d.length[mid]! <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the entry holding `offset`, or -1 (past the mapped part, or an empty map). */
export function entryAt(d: MapData, offset: number): number {
  const i = firstEnding(d, offset);
  return i < d.start.length && d.start[i]! <= offset ? i : -1;
}

/** How far the entries of `d` reach: to the end of its range, or to where they stopped. */
export const mappedEnd = (d: MapData) => d.truncatedAt ?? d.to;

/**
 * Cell codes for `cells` cells of `bytesPerCell` bytes from `start`: 0 is
 * not mapped (beyond a truncated map), else 1 + kind index * 256 + depth.
 * Where several ranges share a cell, the most telling kind wins (data over
 * zeros over unallocated), so a small data range stays visible when zoomed out.
 * `detail`, when given, is an exact map of part of the window and wins there.
 */
export function binCells(overview: MapData, detail: MapData | undefined, start: number, bytesPerCell: number, cells: number): Uint16Array {
  const out = new Uint16Array(cells);
  const end = start + bytesPerCell * cells;
  const paint = (d: MapData, from: number, to: number) => {
    const stop = Math.min(to, mappedEnd(d));
    for (let i = firstEnding(d, from); i < d.start.length && d.start[i]! < stop; i++) {
      const s = Math.max(d.start[i]!, from);
      const e = Math.min(d.start[i]! + d.length[i]!, stop);
      if (e <= s) continue;
      const code = 1 + KINDS.indexOf(kindOf(d.flags[i]!)) * 256 + d.depth[i]!;
      const c0 = Math.max(0, Math.floor((s - start) / bytesPerCell));
      const c1 = Math.min(cells, Math.ceil((e - start) / bytesPerCell));
      const rank = (code - 1) >> 8;
      for (let c = c0; c < c1; c++) if (out[c] === 0 || rank > (out[c]! - 1) >> 8) out[c] = code;
    }
  };
  paint(overview, start, end);
  if (detail) {
    // The exact map replaces the overview's cells it covers, not only adds to them.
    const c0 = Math.max(0, Math.ceil((detail.from - start) / bytesPerCell));
    const c1 = Math.min(cells, Math.floor((mappedEnd(detail) - start) / bytesPerCell));
    if (c1 > c0) out.fill(0, c0, c1);
    paint(detail, Math.max(start, detail.from), Math.min(end, mappedEnd(detail)));
  }
  return out;
}

export function decodeCell(code: number): { kind: Kind; depth: number } | undefined {
  if (code === 0) return undefined;
  return { kind: KINDS[(code - 1) >> 8]!, depth: (code - 1) & 255 };
}

/** Hues of the layers' data, top first: the image itself in blue, each backing layer its own. */
const LAYER_HUES = [217, 172, 275, 32, 130, 330];

/** The fill of a kind at a depth; zeros are drawn hatched in a pale shade of their layer. */
export function colourOf(kind: Kind, depth: number, dark: boolean): string {
  if (kind === 'unallocated') return dark ? '#3a404b' : '#d9dde4';
  if (kind === 'compressed') {
    const l = dark ? 62 : 48;
    return `hsl(0 ${70 - Math.min(depth, 4) * 10}% ${l + Math.min(depth, 4) * 6}%)`;
  }
  const hue = LAYER_HUES[depth % LAYER_HUES.length]!;
  // Deeper than the palette: the same hues again, lighter.
  const round = Math.floor(depth / LAYER_HUES.length);
  if (kind === 'zero') return `hsl(${hue} 45% ${dark ? 32 : 86}%)`;
  return `hsl(${hue} ${dark ? 70 : 72}% ${(dark ? 60 : 47) + round * 10}%)`;
}

/** Lines of the hatching over zeros. */
export const hatchOf = (dark: boolean) => (dark ? 'rgba(255,255,255,0.28)' : 'rgba(0,0,0,0.22)');

export const hex = (n: number) => '0x' + n.toString(16);

/** Entry `i` as qemu-img map's JSON names it. */
export function entryOf(d: MapData, i: number): MapEntry {
  const flags = d.flags[i]!;
  const offset = d.offset[i]!;
  const file = d.file[i]!;
  return {
    start: d.start[i]!,
    length: d.length[i]!,
    depth: d.depth[i]!,
    present: !!(flags & MAP_PRESENT),
    zero: !!(flags & MAP_ZERO),
    data: !!(flags & MAP_DATA),
    offset: Number.isNaN(offset) ? undefined : offset,
    filename: file < 0 ? undefined : d.files[file],
    compressed: !!(flags & MAP_COMPRESSED),
  };
}

/** Entries [from, to) of `d` as objects, for the text outputs. */
export function entriesOf(d: MapData, from = 0, to = d.start.length): MapEntry[] {
  const out: MapEntry[] = [];
  for (let i = from; i < Math.min(to, d.start.length); i++) out.push(entryOf(d, i));
  return out;
}

/** The kinds and the layers present in a map, for the legend. */
export function presentIn(d: MapData): { kinds: Set<Kind>; depths: Map<number, Set<Kind>> } {
  const kinds = new Set<Kind>();
  const depths = new Map<number, Set<Kind>>();
  for (let i = 0; i < d.start.length; i++) {
    const k = kindOf(d.flags[i]!);
    kinds.add(k);
    if (k === 'unallocated') continue;
    const at = depths.get(d.depth[i]!) ?? new Set<Kind>();
    at.add(k);
    depths.set(d.depth[i]!, at);
  }
  return { kinds, depths };
}
