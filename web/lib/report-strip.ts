/**
 * The difference strip's geometry: differing ranges placed along a strip
 * that stands for the whole disk. A range too small to see still gets a
 * minimum width, and ranges that would overlap on screen become one segment
 * (a strip of a few hundred pixels cannot show a million ranges apart), so
 * the picture costs the same whatever the number of ranges. Used by the live
 * strip and the HTML report's inline SVG alike.
 */

export interface StripRange {
  start: number;
  length: number;
}

export interface Segment {
  /** Left edge and width, in strip units. */
  x: number;
  width: number;
  /** The ranges it stands for, as indices into the list: [first, last]. */
  first: number;
  last: number;
  /** Guest offsets it covers: from the first range's start to the last range's end. */
  start: number;
  end: number;
}

/** Segments for `ranges` (sorted, not overlapping) on a strip `width` units wide standing for `total` bytes. */
export function stripSegments(ranges: readonly StripRange[], total: number, width: number, minWidth = 2): Segment[] {
  const out: Segment[] = [];
  if (total <= 0 || width <= 0) return out;
  const scale = width / total;
  ranges.forEach((r, i) => {
    let x = r.start * scale;
    const w = Math.max(minWidth, r.length * scale);
    x = Math.max(0, Math.min(x, width - w));
    const last = out[out.length - 1];
    // Touching on screen (within half a unit) is the same as overlapping.
    if (last && x <= last.x + last.width + 0.5) {
      last.width = Math.max(last.width, x + w - last.x);
      last.last = i;
      last.end = r.start + r.length;
    } else {
      out.push({ x, width: w, first: i, last: i, start: r.start, end: r.start + r.length });
    }
  });
  return out;
}
