/**
 * The engine's one facade. The web app reaches it through a worker with
 * Comlink, the CLI calls it in-process; both name images by the names their
 * workspace knows (paths in the CLI, picked files in the browser) and get
 * structured results back, to print or to draw.
 */
import { BackingLoopError, OpenError, OptionError, VDiskError } from './errors.ts';
import type { ByteSource } from './io/source.ts';
import type { ByteSink } from './io/sink.ts';
import type { Opener } from './io/opener.ts';
import { normalizePath } from './io/opener.ts';
import type { Layer, SnapshotInfo, SnapshotSelector } from './driver.ts';
import { openImage, openLayer, type Image } from './image.ts';
import { layerInfo, type ImageInfo } from './ops/info.ts';
import { mapImage, type MapEntry } from './ops/map.ts';
import { convertImage, type Progress } from './ops/convert.ts';
import { dataRanges } from './ops/measure.ts';
import { measurerByName, writerByName, writers } from './drivers/writers.ts';
import type { Compressor } from './codecs/compress.ts';
import type { CreateOptions, Measurement, SinkOpener } from './writer.ts';
import { nameOnly } from './io/source.ts';
import { compareImages, type CompareOptions, type CompareReport } from './ops/compare.ts';
import { checkLayer, type CheckReport } from './ops/check.ts';
import { ImageReader } from './ops/read.ts';

/** Where images come from: the files a user named, and the gate for files they refer to. */
export interface Workspace {
  readonly opener: Opener;
  open(name: string): Promise<ByteSource>;
  /**
   * Reads out of turn cost little (files in the page cache): convert then
   * looks ahead for zeros that no layer reports. Not for Blob reads, whose
   * read-ahead follows one sequential scan that such reads would break.
   */
  readonly readsAhead?: boolean;
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
  /** The output format (qemu's -O) and its `-o` options. */
  outFormat: string;
  options?: ReadonlyMap<string, string>;
  /** -c */
  compress?: boolean;
  /** -B / -F: the output's backing file, named as the output will store it (relative to the output). */
  backing?: { name: string; format?: string };
  sparseSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

/** qemu-img convert's options that sparsify takes; the output format defaults to the source's. */
export interface SparsifyRequest extends ImageRef {
  outFormat?: string;
  options?: ReadonlyMap<string, string>;
  sparseSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

/** A file and its length in bytes. */
export interface FileLength {
  name: string;
  length: number;
}

/**
 * What sparsify read and wrote. The saving is `after` against `before`: file
 * lengths, as `info` reports disk size. A platform that can see how much of a
 * file the disk holds (the CLI) may count that instead, over the same files.
 */
export interface SparsifyResult {
  /** The output's format. */
  format: string;
  /** Every file the source is made of: the image, its backing files, extents and data files, each once. */
  inputs: FileLength[];
  /** Every file written: the output and any extent files. */
  outputs: FileLength[];
  /** Total length of the inputs. */
  before: number;
  /** Total length of the outputs. */
  after: number;
}

/** Where a conversion writes: the output file, and further files named relative to it. */
export interface ConvertTarget {
  name: string;
  sink: ByteSink;
  openSink: SinkOpener;
  compressor?: Compressor;
}

export interface MapRequest extends ImageRef {
  start?: number;
  length?: number;
  signal?: AbortSignal;
}

export interface MeasureRequest {
  /** The image to measure, or none with `size` (qemu's --size). */
  source?: ImageRef & { snapshot?: SnapshotSelector | string };
  size?: number;
  outFormat: string;
  options?: ReadonlyMap<string, string>;
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

  async map(ref: MapRequest): Promise<MapEntry[]> {
    const out: MapEntry[] = [];
    for await (const e of this.mapEntries(ref)) out.push(e);
    return out;
  }

  /** qemu-img map's entries one at a time, for a caller that may stop early. */
  async *mapEntries(ref: MapRequest): AsyncGenerator<MapEntry> {
    const image = await this.openChain(ref.name, ref.format);
    yield* mapImage(image, ref);
  }

  /** qemu-img convert: any source the engine reads into any format it writes. */
  async convert(req: ConvertRequest, target: ConvertTarget): Promise<void> {
    try {
      const snapshot = typeof req.snapshot === 'string' ? await this.snapshotByIdOrName(req) : req.snapshot;
      await this.convertOpened(await this.openChain(req.name, req.format, snapshot), req, target);
    } catch (e) {
      await target.sink.abort();
      throw e;
    }
  }

  /**
   * A conversion with zero detection into the source's own format (or
   * `outFormat`), reporting the files it read and wrote, and their lengths.
   */
  async sparsify(req: SparsifyRequest, target: ConvertTarget): Promise<SparsifyResult> {
    const inputs = new Map<string, FileLength>();
    const outputs: FileLength[] = [];
    const note = (s: ByteSource) => (inputs.set(normalizePath(s.name), { name: s.name, length: s.size }), s);
    const ws: Workspace = {
      opener: { resolve: (name, from) => this.ws.opener.resolve(name, from), open: async (name, from, kind) => note(await this.ws.opener.open(name, from, kind)) },
      open: async (name) => note(await this.ws.open(name)),
    };
    const counted = (sink: ByteSink): ByteSink => ({
      name: sink.name,
      write: (offset, data) => sink.write(offset, data),
      commit: async (length) => {
        await sink.commit(length);
        outputs.push({ name: sink.name, length });
      },
      abort: () => sink.abort(),
    });
    try {
      const image = await new EngineApi(ws).openChain(req.name, req.format);
      const format = req.outFormat ?? image.layers[0]!.format;
      if (req.outFormat === undefined && !writers.some((w) => w.name === format)) {
        throw new OptionError(`Writing the '${format}' format is not supported: choose an output format with -O`);
      }
      await this.convertOpened(image, { ...req, outFormat: format }, {
        ...target,
        sink: counted(target.sink),
        openSink: async (name) => counted(await target.openSink(name)),
      });
      const total = (files: FileLength[]) => files.reduce((sum, f) => sum + f.length, 0);
      return { format, inputs: [...inputs.values()], outputs, before: total([...inputs.values()]), after: total(outputs) };
    } catch (e) {
      await target.sink.abort();
      throw e;
    }
  }

  /** Writes an opened image into a new file of the requested format. */
  private async convertOpened(image: Image, req: ConvertRequest, target: ConvertTarget): Promise<void> {
    const writer = writerByName(req.outFormat);
    const unknown = [...(req.options?.keys() ?? [])].find((name) => !writer.optionNames.includes(name));
    if (unknown !== undefined) throw new OptionError(`Invalid parameter '${unknown}'`);
    let backing: Image | undefined;
    if (req.backing) {
      // The backing file is found as the new image will find it: relative to the output.
      const name = req.backing.name;
      const src = await guard(name, () => this.ws.opener.open(name, nameOnly(target.name), 'backing file'));
      backing = await guard(name, () => openImage(src, { opener: this.ws.opener, format: req.backing!.format }));
    }
    const create: CreateOptions = {
      size: image.size,
      options: req.options ?? new Map(),
      compress: req.compress ?? false,
      backing: req.backing && { name: req.backing.name, format: req.backing.format ?? backing?.layers[0]!.format, facts: backing?.layers[0]!.facts() },
    };
    const out = await writer.create(target.sink, create, target.openSink);
    await convertImage(image, out, { ...req, backing, compressor: target.compressor, lookAhead: this.ws.readsAhead });
  }

  /** qemu-img measure: the size a conversion's output needs. */
  async measure(req: MeasureRequest): Promise<Measurement> {
    const measurer = measurerByName(req.outFormat);
    const src = req.source;
    if (!src) return measurer.measure({ size: req.size ?? 0, options: req.options ?? new Map(), compress: false }, dataRanges(undefined));
    const snapshot = typeof src.snapshot === 'string' ? await this.snapshotByIdOrName(src) : src.snapshot;
    const image = await this.openChain(src.name, src.format, snapshot);
    const source = { format: image.layers[0]!.format };
    return measurer.measure({ size: req.size ?? image.size, options: req.options ?? new Map(), compress: false, source }, dataRanges(image));
  }

  /** qemu-img check of the named image (read-only). */
  async check(ref: ImageRef & { signal?: AbortSignal }): Promise<CheckReport> {
    const image = await this.openChain(ref.name, ref.format, undefined, true);
    return checkLayer(image.layers[0]!, ref.signal);
  }

  /** qemu-img compare of two images (each with its backing chain). */
  async compare(a: ImageRef, b: ImageRef, opts: CompareOptions = {}): Promise<CompareReport> {
    const imageA = await this.openChain(a.name, a.format);
    const imageB = await this.openChain(b.name, b.format);
    return compareImages({ image: imageA, name: a.name }, { image: imageB, name: b.name }, opts);
  }

  /** Guest bytes [offset, offset + out.length) of the named image through its chain; past the end reads as zeros. */
  async read(ref: ImageRef, offset: number, out: Uint8Array): Promise<void> {
    const image = await this.openChain(ref.name, ref.format);
    const n = Math.max(0, Math.min(out.length, image.size - offset));
    out.fill(0, n);
    if (n > 0) await new ImageReader(image).read(offset, out.subarray(0, n));
  }

  /** qemu's bdrv_snapshot_load_tmp_by_id_or_name: try the string as an id, then as a name. */
  private async snapshotByIdOrName(req: ImageRef & { snapshot?: SnapshotSelector | string }): Promise<SnapshotSelector> {
    const s = req.snapshot as string;
    const layer = await guard(req.name, async () => openLayer(await this.ws.open(req.name), this.ws.opener, req.format));
    return layer.snapshots().some((x) => x.id === s) ? { id: s } : { name: s };
  }

  private async openNamed(name: string): Promise<ByteSource> {
    return guard(name, () => this.ws.open(name));
  }

  private async openChain(name: string, format?: string, snapshot?: SnapshotSelector, forCheck = false): Promise<Image> {
    const source = await this.openNamed(name);
    return guard(name, () => openImage(source, { opener: this.ws.opener, format, snapshot, forCheck }));
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
