/**
 * The part of the guest address space the Map view shows, and its cursor:
 * zoom about a point, pan, jump to a range. The canvas, the scale, the
 * buttons and the table all move the same viewport.
 */

/** The deepest zoom: one byte a cell would say nothing more than a sector does. */
const MIN_BYTES_PER_CELL = 1;

export class Viewport {
  /** First guest byte shown. */
  start = $state(0);
  /** Bytes shown. */
  span = $state(0);
  /** The keyboard cursor, a guest offset. */
  cursor = $state(0);
  /** Cells in the picture (set by the canvas when it knows its size), which bounds the zoom. */
  cells = $state(1);

  constructor(readonly size: number) {
    this.span = size;
  }

  get end(): number {
    return this.start + this.span;
  }

  get bytesPerCell(): number {
    return this.span / this.cells;
  }

  /** The whole disk. */
  reset(): void {
    this.start = 0;
    this.span = this.size;
  }

  /** Zooms by `factor` (above 1 zooms in) keeping guest offset `at` where it is on screen. */
  zoom(factor: number, at = this.cursor): void {
    const span = Math.min(this.size, Math.max(this.cells * MIN_BYTES_PER_CELL, this.span / factor));
    const rel = this.span > 0 ? (at - this.start) / this.span : 0;
    this.span = span;
    this.#place(at - rel * span);
  }

  /** Moves the window by `bytes` (negative: towards the start). */
  pan(bytes: number): void {
    this.#place(this.start + bytes);
  }

  /** Shows [start, start + length) with a margin around it, and puts the cursor on its start. */
  show(start: number, length: number): void {
    const span = Math.min(this.size, Math.max(this.cells * MIN_BYTES_PER_CELL, length * 1.25));
    this.span = span;
    this.#place(start + length / 2 - span / 2);
    this.cursor = start;
  }

  /** Moves the cursor, panning so it stays in view. */
  moveCursor(to: number): void {
    this.cursor = Math.min(Math.max(0, to), Math.max(0, this.size - 1));
    if (this.cursor < this.start) this.#place(this.cursor);
    else if (this.cursor >= this.end) this.#place(this.cursor - this.span + this.bytesPerCell);
  }

  #place(start: number): void {
    this.start = Math.min(Math.max(0, start), Math.max(0, this.size - this.span));
  }
}
