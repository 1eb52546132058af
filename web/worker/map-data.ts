/**
 * The packed map that crosses from the worker to the page, apart from the
 * worker code so the page can read it without bundling the engine.
 */
/** Range flags, as qemu-img map's booleans. */
export const MAP_PRESENT = 1;
export const MAP_ZERO = 2;
export const MAP_DATA = 4;
export const MAP_COMPRESSED = 8;

/** A map as columns: entry i is start[i], length[i], … */
export interface MapData {
  /** The image's virtual size. */
  size: number;
  /** The guest range the entries cover. */
  from: number;
  to: number;
  start: Float64Array;
  length: Float64Array;
  /** Host offset, NaN where qemu-img map prints none. */
  offset: Float64Array;
  /** 0 is the image itself, 1 its backing file … */
  depth: Uint8Array;
  flags: Uint8Array;
  /** Index into `files` of the file that holds the range, -1 for none. */
  file: Int16Array;
  files: string[];
  /** Set when the entries stopped at `maxEntries`: the guest offset where they stop. */
  truncatedAt?: number;
}

export interface MapRequest {
  format?: string;
  start?: number;
  length?: number;
  /** At most this many entries (default 200 000): a pathological image cannot fill the page's memory. */
  maxEntries?: number;
}
