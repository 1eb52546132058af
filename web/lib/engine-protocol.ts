/**
 * The typed boundary between the page and the engine worker: what the page
 * sends (picked files with their relative paths) and what comes back. Results
 * are plain data, and engine errors come back as values rather than thrown,
 * because a thrown error loses its fields (like the missing file's name) on
 * its way through postMessage.
 */
import type { ImageInfo } from '../../engine/ops/info.ts';
import type { SnapshotInfo } from '../../engine/driver.ts';
import type { ReferenceKind } from '../../engine/errors.ts';
import type { QValue } from '../../engine/format/qemu-json.ts';

export type { ImageInfo, SnapshotInfo, ReferenceKind, QValue };

/** A file the user gave: its path relative to the folder they picked (or its bare name), and its bytes. */
export type { PickedFile } from '../../engine/io/file-set.ts';
import type { PickedFile } from '../../engine/io/file-set.ts';

/** One picked file as an image: what it is and whether another picked image uses it as backing. */
export interface Candidate {
  path: string;
  /** Probed format; absent when the file could not be opened as an image. */
  format?: string;
  /** Another picked file names this one as its backing file. */
  referenced: boolean;
}

/** One layer of an image, as `qemu-img info` describes it. */
export interface LayerReport {
  info: ImageInfo;
  snapshots: SnapshotInfo[];
}

/** A file the image refers to that the user has not given. */
export interface MissingFile {
  /** The name exactly as the referring image stores it. */
  requested: string;
  /** Where it was looked for among the picked files. */
  path: string;
  kind: ReferenceKind;
  /** The image that refers to it. */
  neededBy: string;
}

/** What `qemu-img info` would print for the image: the command and its two outputs. */
export interface InfoText {
  command: string;
  human: string;
  json: string;
}

export type InfoOutcome =
  /** The whole backing chain opened; `layers` is top first. */
  | { ok: true; layers: LayerReport[]; text: InfoText }
  /**
   * The chain stopped at a file that could not be opened: `layers` are the
   * ones above it (possibly none), `missing` is set when the cause is a file
   * the user has not given.
   */
  | { ok: false; layers: LayerReport[]; text?: InfoText; missing?: MissingFile; error: { file: string; message: string } };

/** The facade the worker exposes. */
export interface EngineWorker {
  /** Which zero-detection kernels the engine runs: `wasm-simd`, `wasm-scalar` or `typescript`. */
  kernels(): Promise<string>;
  /** Probes every picked file, and marks the ones another picked image uses as its backing file. */
  candidates(files: PickedFile[]): Promise<Candidate[]>;
  /** `qemu-img info --backing-chain` of the picked file at `name`, looking for its backing files among `files`. */
  info(files: PickedFile[], name: string, opts?: { format?: string }): Promise<InfoOutcome>;
}
