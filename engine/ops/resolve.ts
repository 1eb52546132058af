/**
 * Following a guest offset down the layers: the one place that turns a
 * layer's "not here" into the next layer's answer, or into zeros at the
 * bottom of the chain and past the end of a shorter backing file. This is
 * qemu's block-status walk, so `map` depths and flags match qemu-img's.
 */
import type { Image } from '../image.ts';
import type { CompressedMapping, DataMapping, Layer, ZeroMapping } from '../driver.ts';

export interface Resolved {
  mapping: DataMapping | ZeroMapping | CompressedMapping;
  /** Index of the layer that answered (0 = top). */
  depth: number;
  layer: Layer;
  /** False when no layer holds the range and it reads as zeros by default. */
  present: boolean;
}

export async function resolve(image: Image, offset: number, maxLength: number): Promise<Resolved> {
  let length = Math.min(maxLength, image.size - offset);
  for (let depth = 0; ; depth++) {
    const layer = image.layers[depth]!;
    const m = await layer.getMapping(offset, length);
    if (m.kind === 'data' || m.kind === 'zero' || m.kind === 'compressed') return { mapping: m, depth, layer, present: true };
    const lower = image.layers[depth + 1];
    // At the bottom, or past the end of a shorter backing file: zeros, held by no layer.
    const runLength = m.kind === 'eof' ? length : m.length;
    if (!lower || offset >= lower.size) {
      return { mapping: { kind: 'zero', offset, length: runLength }, depth, layer, present: false };
    }
    length = runLength;
  }
}
