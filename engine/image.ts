/**
 * An image is a stack of layers: the file the user opened, its backing file,
 * that file's backing file … Opening one probes (or takes) its format, then
 * follows backing references through the opener gate, refusing loops.
 */
import { BackingChainError, BackingLoopError, VDiskError } from './errors.ts';
import type { ByteSource } from './io/source.ts';
import { normalizePath as normalize, type Opener } from './io/opener.ts';
import type { Layer, SnapshotSelector } from './driver.ts';
import { driverByName, probe } from './drivers/index.ts';

/** Deeper chains than this are treated as a loop the names did not reveal. */
const MAX_CHAIN_DEPTH = 256;

export interface Image {
  /** Top layer first. */
  readonly layers: readonly Layer[];
  /** The guest size: the top layer's. */
  readonly size: number;
}

export interface OpenOptions {
  opener: Opener;
  /** Format of the top layer; probed from content when absent. */
  format?: string;
  /** Open the backing chain (default). `info` opens without it, as qemu-img does. */
  backing?: boolean;
  /** Read the top layer as it was at this internal snapshot. */
  snapshot?: SnapshotSelector;
  /** Open the top layer to be checked (`OpenContext.forCheck`); backing files open as usual. */
  forCheck?: boolean;
}

export async function openLayer(source: ByteSource, opener: Opener, format?: string, forCheck = false): Promise<Layer> {
  const driver = format ? driverByName(format, source.name) : await probe(source);
  return driver.open(source, { opener, forCheck });
}

export async function openImage(source: ByteSource, opts: OpenOptions): Promise<Image> {
  let top = await openLayer(source, opts.opener, opts.format, opts.forCheck);
  if (opts.snapshot) top = await top.atSnapshot(opts.snapshot);
  const layers: Layer[] = [top];
  if (opts.backing !== false) await openChain(layers, opts.opener);
  return { layers, size: top.size };
}

/** Opens backing files below the last layer until a layer has none. */
async function openChain(layers: Layer[], opener: Opener): Promise<void> {
  const seen = [normalize(layers[0]!.source.name)];
  for (;;) {
    const upper = layers[layers.length - 1]!;
    const ref = upper.backing;
    if (!ref) return;
    const full = normalize(opener.resolve(ref.name, upper.source));
    if (seen.includes(full) || layers.length >= MAX_CHAIN_DEPTH) {
      throw new BackingLoopError(ref.name, layers.map((l) => l.source.name));
    }
    seen.push(full);
    try {
      const src = await opener.open(ref.name, upper.source, 'backing file');
      layers.push(await openLayer(src, opener, ref.format));
    } catch (e) {
      throw e instanceof VDiskError ? new BackingChainError(e, layers.map((l) => l.source.name)) : e;
    }
  }
}
