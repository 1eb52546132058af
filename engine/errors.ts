/**
 * Typed errors of the engine. Every error says which file, which structure and
 * which offset it is about, so the CLI can print one clear line and the web app
 * can ask the user for a missing file by the name the image gives.
 */

export class VDiskError extends Error {
  /** The file the error is about (as the image or the user named it). */
  readonly file: string;
  constructor(file: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.file = file;
  }
}

/** A structure in the image is malformed or points somewhere it may not. */
export class ImageFormatError extends VDiskError {
  readonly structure: string;
  readonly offset: number | undefined;
  readonly detail: string;
  constructor(file: string, structure: string, offset: number | undefined, detail: string) {
    super(file, `${structure}${offset === undefined ? '' : ` at offset ${offset}`}: ${detail}`);
    this.structure = structure;
    this.offset = offset;
    this.detail = detail;
  }
}

/** The image uses a feature this engine does not implement (yet). */
export class UnsupportedFeatureError extends VDiskError {
  readonly feature: string;
  constructor(file: string, feature: string) {
    super(file, `Unsupported feature: ${feature}`);
    this.feature = feature;
  }
}

/** What kind of file could not be opened: the one the user named, or one an image refers to. */
export type ReferenceKind = 'image' | 'backing file' | 'data file' | 'extent';

/**
 * A file the image refers to (backing file, external data file, extent) is not
 * available. `requested` is the name exactly as the image stores it (what the
 * web app asks the user for); `path` is where it was looked for.
 */
export class BackingFileMissingError extends VDiskError {
  constructor(
    readonly requested: string,
    readonly path: string,
    readonly kind: ReferenceKind,
    readonly reason = 'No such file or directory',
  ) {
    super(path, `Could not open '${path}': ${reason}`);
  }
}

/**
 * An error met while opening a backing file of an image: `inner` is what went
 * wrong, `via` the images above it, top first. qemu-img words this as one
 * "Could not open backing file:" per level.
 */
export class BackingChainError extends VDiskError {
  constructor(
    readonly inner: VDiskError,
    readonly via: readonly string[],
  ) {
    super(inner.file, 'Could not open backing file: '.repeat(via.length) + inner.message);
  }
}

/** The image refers to itself, directly or through its chain. */
export class BackingLoopError extends VDiskError {
  constructor(file: string, chain: string[]) {
    super(file, `Backing file '${file}' creates an infinite loop (${[...chain, file].join(' -> ')})`);
  }
}

/** Opening the image the user named failed; `file` is that image, `inner` the reason. */
export class OpenError extends VDiskError {
  constructor(
    file: string,
    readonly inner: VDiskError,
  ) {
    super(file, inner.message);
  }
}

/** The underlying storage failed or returned fewer bytes than asked. */
export class ReadError extends VDiskError {
  readonly offset: number;
  constructor(file: string, offset: number, length: number, detail: string) {
    super(file, `Read of ${length} bytes at offset ${offset} failed: ${detail}`);
    this.offset = offset;
  }
}

/** The caller asked for something the image does not have (a snapshot, an option). */
export class InvalidRequestError extends VDiskError {}

/** A conversion option (`-o name=value`, `-O format`) is unknown, cannot be parsed, or asks for something the format cannot do. */
export class OptionError extends VDiskError {
  constructor(message: string) {
    super('', message);
  }
}

/**
 * An option's value the format cannot use (alone or with the others), found
 * while the output is being created: qemu-img words it "DST: error while
 * converting FMT: …", where a mistyped option name or value gets no prefix.
 */
export class OptionValueError extends OptionError {}

/** No internal snapshot matches the id and/or name asked for. */
export class SnapshotNotFoundError extends InvalidRequestError {
  constructor(file: string) {
    super(file, "Can't find snapshot");
  }
}

/** The operation was cancelled through its AbortSignal. */
export class CancelledError extends VDiskError {
  constructor(file = '') {
    super(file, 'Operation cancelled');
  }
}

export function throwIfAborted(signal: AbortSignal | undefined, file = ''): void {
  if (signal?.aborted) throw new CancelledError(file);
}
