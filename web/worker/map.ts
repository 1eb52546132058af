/**
 * Worker side of the Map view: `qemu-img map` of an image as packed columns
 * (typed arrays, transferred rather than copied), so a map of many thousand
 * ranges crosses to the page in one message and is drawn without objects.
 */
import { transfer } from 'comlink';
import type { MapEntry } from '../../engine/ops/map.ts';
import type { Outcome, PickedFile, Progress } from '../lib/engine-protocol.ts';
import { attempt, engineOver, withProgress } from './common.ts';
import { MAP_COMPRESSED, MAP_DATA, MAP_PRESENT, MAP_ZERO, type MapData, type MapRequest } from './map-data.ts';

export type { MapData, MapRequest };

export interface MapOps {
  /** `onProgress` counts guest bytes mapped out of the range asked for. */
  map(files: PickedFile[], name: string, req?: MapRequest, onProgress?: (p: Progress) => void): Promise<Outcome<MapData>>;
}

const DEFAULT_MAX_ENTRIES = 200_000;

function pack(entries: MapEntry[], size: number, from: number, to: number, truncatedAt?: number): MapData {
  const n = entries.length;
  const files: string[] = [];
  const data: MapData = {
    size,
    from,
    to,
    start: new Float64Array(n),
    length: new Float64Array(n),
    offset: new Float64Array(n),
    depth: new Uint8Array(n),
    flags: new Uint8Array(n),
    file: new Int16Array(n),
    files,
    truncatedAt,
  };
  entries.forEach((e, i) => {
    data.start[i] = e.start;
    data.length[i] = e.length;
    data.offset[i] = e.offset ?? NaN;
    data.depth[i] = Math.min(e.depth, 255);
    data.flags[i] = (e.present ? MAP_PRESENT : 0) | (e.zero ? MAP_ZERO : 0) | (e.data ? MAP_DATA : 0) | (e.compressed ? MAP_COMPRESSED : 0);
    let f = e.filename === undefined ? -1 : files.indexOf(e.filename);
    if (e.filename !== undefined && f < 0) f = files.push(e.filename) - 1;
    data.file[i] = f;
  });
  return data;
}

export const mapOps: MapOps = {
  async map(files, name, req = {}, onProgress) {
    const { api } = await engineOver(files);
    const outcome = await withProgress(onProgress, (report) =>
      attempt(async () => {
        const size = (await api.info({ name, format: req.format })).images[0]!['virtual-size'];
        const from = Math.min(req.start ?? 0, size);
        const to = Math.min(size, from + (req.length ?? size));
        const max = req.maxEntries ?? DEFAULT_MAX_ENTRIES;
        const entries: MapEntry[] = [];
        // The chain is opened once, through the facade; its map is walked here so it can stop at the limit.
        for await (const e of api.mapEntries({ name, format: req.format, start: from, length: to - from })) {
          if (entries.length === max) return pack(entries, size, from, e.start, e.start);
          entries.push(e);
          report?.({ done: e.start + e.length - from, total: to - from });
        }
        return pack(entries, size, from, to);
      }),
    );
    if (!outcome.ok) return outcome;
    const d = outcome.value;
    return transfer(outcome, [d.start.buffer, d.length.buffer, d.offset.buffer, d.depth.buffer, d.flags.buffer, d.file.buffer]);
  },
};
