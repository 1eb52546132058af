/**
 * What `measure` needs from a source: its data ranges in guest order (neither
 * zero nor absent in the whole chain), merged. The arithmetic is per format
 * (FormatMeasurer).
 */
import type { Image } from '../image.ts';
import type { DataRange } from '../writer.ts';
import { resolve } from './resolve.ts';

export async function* dataRanges(image: Image | undefined): AsyncGenerator<DataRange> {
  if (!image) return;
  let cur: DataRange | undefined;
  for (let pos = 0; pos < image.size; ) {
    const r = await resolve(image, pos, image.size - pos);
    if (r.mapping.kind !== 'zero') {
      if (cur && cur.start + cur.length === pos) cur.length += r.mapping.length;
      else {
        if (cur) yield cur;
        cur = { start: pos, length: r.mapping.length };
      }
    }
    pos += r.mapping.length;
  }
  if (cur) yield cur;
}
