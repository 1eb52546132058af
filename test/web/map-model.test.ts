/**
 * The Map view's arithmetic without a browser: finding the range at an
 * offset, binning ranges into cells (data wins a shared cell, the part past
 * a truncated map stays unmapped, an exact map of the window replaces the
 * overview there), and the packed columns read back as qemu-img's entries.
 */
import { describe, expect, test } from 'vitest';
import { MAP_DATA, MAP_PRESENT, MAP_ZERO, type MapData } from '../../web/worker/map-data.ts';
import { binCells, decodeCell, entriesOf, entryAt } from '../../web/views/map/map-model.ts';

const DATA = MAP_PRESENT | MAP_DATA;
const ZERO = MAP_PRESENT | MAP_ZERO;
const HOLE = MAP_ZERO;

/** A map from [start, length, flags, depth, host offset] rows. */
function mapOf(size: number, rows: [number, number, number, number, number?][], extra: Partial<MapData> = {}): MapData {
  const n = rows.length;
  return {
    size,
    from: rows[0]?.[0] ?? 0,
    to: n ? rows[n - 1]![0] + rows[n - 1]![1] : 0,
    start: Float64Array.from(rows, (r) => r[0]),
    length: Float64Array.from(rows, (r) => r[1]),
    offset: Float64Array.from(rows, (r) => r[4] ?? NaN),
    depth: Uint8Array.from(rows, (r) => r[3]),
    flags: Uint8Array.from(rows, (r) => r[2]),
    file: Int16Array.from(rows, (r) => (r[4] === undefined ? -1 : 0)),
    files: ['disk.qcow2'],
    ...extra,
  };
}

const kinds = (cells: Uint16Array) => [...cells].map((c) => decodeCell(c)?.kind ?? 'unmapped');

describe('map model', () => {
  const map = mapOf(1000, [
    [0, 100, DATA, 0, 4096],
    [100, 150, HOLE, 1],
    [250, 5, DATA, 1, 8192],
    [255, 245, ZERO, 0],
    [500, 500, HOLE, 1],
  ]);

  test('finds the range holding an offset', () => {
    expect([0, 99, 100, 254, 255, 999].map((o) => entryAt(map, o))).toEqual([0, 0, 1, 2, 3, 4]);
    expect(entryAt(map, 1000)).toBe(-1);
  });

  test('bins ranges into cells, data winning a cell it shares', () => {
    // Ten cells of 100 bytes: the 5-byte data range at 250 shows in cell 2.
    expect(kinds(binCells(map, undefined, 0, 100, 10))).toEqual([
      'data',
      'unallocated',
      'data',
      'zero',
      'zero',
      'unallocated',
      'unallocated',
      'unallocated',
      'unallocated',
      'unallocated',
    ]);
    expect(decodeCell(binCells(map, undefined, 0, 100, 10)[2]!)?.depth).toBe(1);
  });

  test('leaves the part past a truncated map unmapped until an exact map of it comes', () => {
    const cut = mapOf(1000, [[0, 300, DATA, 0, 0]], { truncatedAt: 300 });
    expect(kinds(binCells(cut, undefined, 0, 100, 10))).toEqual(['data', 'data', 'data', ...Array(7).fill('unmapped')]);
    const detail = mapOf(1000, [
      [400, 200, ZERO, 0],
      [600, 200, DATA, 2, 1 << 20],
    ]);
    expect(kinds(binCells(cut, detail, 0, 100, 10))).toEqual(['data', 'data', 'data', 'unmapped', 'zero', 'zero', 'data', 'data', 'unmapped', 'unmapped']);
  });

  test('reads back as the entries qemu-img map prints', () => {
    expect(entriesOf(map, 0, 3)).toEqual([
      { start: 0, length: 100, depth: 0, present: true, zero: false, data: true, offset: 4096, filename: 'disk.qcow2', compressed: false },
      { start: 100, length: 150, depth: 1, present: false, zero: true, data: false, offset: undefined, filename: undefined, compressed: false },
      { start: 250, length: 5, depth: 1, present: true, zero: false, data: true, offset: 8192, filename: 'disk.qcow2', compressed: false },
    ]);
  });
});
