/**
 * The engine's one facade. The web app reaches it through a worker with
 * Comlink, the CLI calls it in-process; both name images by the names their
 * workspace knows (paths in the CLI, picked files in the browser) and get
 * structured results back, to print or to draw.
 */
import { BackingLoopError, OpenError, VDiskError } from './errors.ts';
import type { ByteSource } from './io/source.ts';
import type { ByteSink } from './io/sink.ts';
import type { Opener } from './io/opener.ts';
import { normalizePath } from './io/opener.ts';
import type { Layer, SnapshotInfo, SnapshotSelector } from './driver.ts';
import { openImage, openLayer, type Image } from './image.ts';
import { layerInfo, type ImageInfo } from './ops/info.ts';
import { mapImage, type MapEntry } from './ops/map.ts';
import { convertToRaw, type Progress } from './ops/convert.ts';
import { compareImages, type CompareOptions, type CompareReport } from './ops/compare.ts';
import { checkLayer, type CheckReport } from './ops/check.ts';

/** Where images come from: the files a user named, and the gate for files they refer to. */
export interface Workspace {
  readonly opener: Opener;
  open(name: string): Promise<ByteSource>;
}

export interface InfoResult {
  /** One per layer when the backing chain was asked for, else one. */
  images: ImageInfo[];
  snapshots: SnapshotInfo[][];
  /**
   * With `partial`, why the chain stopped below the last image listed (a
   * missing backing file, a damaged one); without it, such errors are thrown.
   */
  error?: OpenError;
}

export interface ImageRef {
  name: string;
  /** Format of the named image; probed when absent. */
  format?: string;
}

export interface ConvertRequest extends ImageRef {
  /** `snapshot.id` / `snapshot.name`, or a bare string matched as id, then as name (qemu's -s / -l NAME). */
  snapshot?: SnapshotSelector | string;
  sparseSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

export class EngineApi {
  constructor(private readonly ws: Workspace) {}

  /**
   * qemu-img info: the named image alone (its backing files are not opened),
   * or its whole chain. With `partial`, a chain that cannot be followed to
   * the end comes back with the layers that opened and the reason.
   */
  async info(ref: ImageRef & { backingChain?: boolean; partial?: boolean }): Promise<InfoResult> {
    const result: InfoResult = { images: [], snapshots: [] };
    let name = ref.name;
    let format = ref.format;
    let open = () => this.ws.open(name);
    const seen: string[] = [];
    for (;;) {
      let layer: Layer;
      try {
        const source = await guard(name, open);
        layer = await guard(name, () => openLayer(source, this.ws.opener, format));
        if (seen.includes(normalizePath(source.name))) throw new OpenError(name, new BackingLoopError(name, seen));
        seen.push(normalizePath(source.name));
      } catch (e) {
        if (ref.partial && result.images.length > 0 && e instanceof OpenError) return { ...result, error: e };
        throw e;
      }
      result.images.push(layerInfo(layer, this.ws.opener));
      result.snapshots.push(layer.snapshots());
      const backing = layer.backing;
      if (!ref.backingChain || !backing) return result;
      name = this.ws.opener.resolve(backing.name, layer.source);
      format = backing.format;
      open = () => this.ws.opener.open(backing.name, layer.source, 'backing file');
    }
  }

  async map(ref: ImageRef & { start?: number; length?: number; signal?: AbortSignal }): Promise<MapEntry[]> {
    const image = await this.openChain(ref.name, ref.format);
    const out: MapEntry[] = [];
    for await (const e of mapImage(image, ref)) out.push(e);
    return out;
  }

  async convertToRaw(req: ConvertRequest, sink: ByteSink): Promise<void> {
    const snapshot = typeof req.snapshot === 'string' ? await this.snapshotByIdOrName(req) : req.snapshot;
    const image = await this.openChain(req.name, req.format, snapshot);
    await convertToRaw(image, sink, req);
  }

  /** qemu-img check of the named image (read-only). */
  async check(ref: ImageRef & { signal?: AbortSignal }): Promise<CheckReport> {
    const image = await this.openChain(ref.name, ref.format);
    return checkLayer(image.layers[0]!, ref.signal);
  }

  /** qemu-img compare of two images (each with its backing chain). */
  async compare(a: ImageRef, b: ImageRef, opts: CompareOptions = {}): Promise<CompareReport> {
    const imageA = await this.openChain(a.name, a.format);
    const imageB = await this.openChain(b.name, b.format);
    return compareImages({ image: imageA, name: a.name }, { image: imageB, name: b.name }, opts);
  }

  /** qemu's bdrv_snapshot_load_tmp_by_id_or_name: try the string as an id, then as a name. */
  private async snapshotByIdOrName(req: ConvertRequest): Promise<SnapshotSelector> {
    const s = req.snapshot as string;
    const layer = await guard(req.name, async () => openLayer(await this.ws.open(req.name), this.ws.opener, req.format));
    return layer.snapshots().some((x) => x.id === s) ? { id: s } : { name: s };
  }

  private async openNamed(name: string): Promise<ByteSource> {
    return guard(name, () => this.ws.open(name));
  }

  private async openChain(name: string, format?: string, snapshot?: SnapshotSelector): Promise<Image> {
    const source = await this.openNamed(name);
    return guard(name, () => openImage(source, { opener: this.ws.opener, format, snapshot }));
  }
}

/** Runs an open step, tagging engine errors with the image being opened. */
async function guard<T>(name: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    if (e instanceof VDiskError && !(e instanceof OpenError)) throw new OpenError(name, e);
    throw e;
  }
}
