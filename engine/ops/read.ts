/**
 * The generic read path: guest bytes of an image, whatever its format and
 * however deep its chain. Data is read from the file that holds it, zeros are
 * filled, compressed units are decoded once and kept in a small bounded cache.
 */
import { LruCache } from '../cache.ts';
import type { Image } from '../image.ts';
import type { CompressedUnit, Layer } from '../driver.ts';
import { throwIfAborted } from '../errors.ts';
import { resolve, type Resolved } from './resolve.ts';

/** Decoded units kept for sequential reads that cross a unit in several requests. */
const DECODED_CACHE_BYTES = 8 * 1024 * 1024;

export class ImageReader {
  private readonly decoded = new LruCache<string, Uint8Array>(DECODED_CACHE_BYTES, (b) => b.length);

  constructor(readonly image: Image) {}

  /** Reads guest bytes [offset, offset + out.length) into `out`. */
  async read(offset: number, out: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    let done = 0;
    while (done < out.length) {
      throwIfAborted(signal);
      const r = await resolve(this.image, offset + done, out.length - done);
      await this.fill(r, out.subarray(done, done + r.mapping.length));
      done += r.mapping.length;
    }
    return out;
  }

  /**
   * Fills `dest` with the guest bytes at `offset` that `r` describes; the
   * range must lie inside `r` (by default it starts where `r` starts). A
   * caller that already resolved a range reads any part of it this way
   * without walking the layers again.
   */
  async fill(r: Resolved, dest: Uint8Array, offset = r.mapping.offset): Promise<void> {
    const m = r.mapping;
    this.check(r);
    if (m.kind === 'zero') dest.fill(0);
    else if (m.kind === 'data') await m.source.read(m.hostOffset + (offset - m.offset), dest.length, dest);
    else {
      const unit = await this.decodedUnit(r.depth, r.layer, m.unit);
      const from = offset - m.unit.guestOffset;
      dest.set(unit.subarray(from, from + dest.length));
    }
  }

  /** The checks a read of `r` makes before any byte is read: each layer above accepts the one below it. */
  check(r: Resolved): void {
    const layers = this.image.layers;
    for (let d = 0; d < r.depth; d++) layers[d]!.checkBacking?.(layers[d + 1]!);
  }

  private decodedUnit(depth: number, layer: Layer, unit: CompressedUnit): Promise<Uint8Array> {
    // Keyed by file too: a layer's compressed units may live in several files (VMDK extents).
    return this.decoded.getOrLoad(`${depth}:${unit.source.name}:${unit.hostOffset}`, async () => {
      const out = new Uint8Array(unit.size);
      await layer.decode(unit, out);
      return out;
    });
  }
}
