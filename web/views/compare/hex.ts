/** The hex view's rows: bytes of both sides at the same guest offsets, and which of them differ. */

export const ROW = 16;

export interface HexCell {
  offset: number;
  /** The byte, or undefined past the end of that image. */
  a?: number;
  b?: number;
  differs: boolean;
}

export interface HexRow {
  offset: number;
  cells: HexCell[];
}

/** Rows for `a` and `b` read at `offset`, cut at the end of the larger image. */
export function hexRows(offset: number, a: Uint8Array, b: Uint8Array, sizeA: number, sizeB: number): HexRow[] {
  const end = Math.min(offset + Math.max(a.length, b.length), Math.max(sizeA, sizeB));
  const rows: HexRow[] = [];
  for (let row = offset; row < end; row += ROW) {
    const cells: HexCell[] = [];
    for (let off = row; off < row + ROW; off++) {
      const i = off - offset;
      const x = off < sizeA ? a[i] : undefined;
      const y = off < sizeB ? b[i] : undefined;
      cells.push({ offset: off, a: x, b: y, differs: off < end && x !== y });
    }
    rows.push({ offset: row, cells });
  }
  return rows;
}

export const hexByte = (v: number | undefined) => (v === undefined ? '  ' : v.toString(16).padStart(2, '0'));

/** Printable ASCII as itself, anything else as a dot. */
export const asciiOf = (v: number | undefined) => (v === undefined ? ' ' : v >= 0x20 && v < 0x7f ? String.fromCharCode(v) : '.');

/** An offset in hex, as wide as the disk's largest offset needs (at least eight digits). */
export const hexOffset = (offset: number, total: number) => offset.toString(16).padStart(Math.max(8, Math.max(0, total - 1).toString(16).length), '0');
