/**
 * The typed boundary between the page and the engine worker. Each operation's
 * request and result types live beside its worker module (web/worker/*.ts);
 * this file joins them into the facade and holds what they share. Results are
 * plain data, and engine errors come back as values rather than thrown,
 * because a thrown error loses its fields (like the missing file's name) on
 * its way through postMessage.
 */
import type { ImageInfo } from '../../engine/ops/info.ts';
import type { SnapshotInfo } from '../../engine/driver.ts';
import type { ReferenceKind } from '../../engine/errors.ts';
import type { QValue } from '../../engine/format/qemu-json.ts';
import type { InfoOps } from '../worker/info.ts';
import type { MapOps } from '../worker/map.ts';
import type { CheckOps } from '../worker/check.ts';
import type { CompareOps } from '../worker/compare.ts';
import type { MeasureOps } from '../worker/measure.ts';
import type { ConvertOps } from '../worker/convert.ts';

export type { ImageInfo, SnapshotInfo, ReferenceKind, QValue };
export type { MapData, MapRequest } from '../worker/map.ts';
export type { CheckOutcome } from '../worker/check.ts';
export type { CompareOutcome, CompareRequest } from '../worker/compare.ts';
export type { CompareReport, DiffRange } from '../../engine/ops/compare.ts';
export type { MeasureRequest } from '../worker/measure.ts';
export type { Measurement } from '../../engine/writer.ts';
export type { ConvertJob, ConvertResult, SaveTarget } from '../worker/convert.ts';

/** A file the user gave: its path relative to the folder they picked (or its bare name), and its bytes. */
export type { PickedFile } from '../../engine/io/file-set.ts';

/** How far a long operation has got, in bytes of the guest disk. */
export interface Progress {
  done: number;
  total: number;
}

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

/** Why an operation failed: the file, the engine's message, and the missing file when that is the cause. */
export interface EngineFailure {
  file: string;
  message: string;
  missing?: MissingFile;
}

/** An operation's answer, or the engine's reason for not giving one. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: EngineFailure };

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
export type EngineWorker = InfoOps & MapOps & CheckOps & CompareOps & MeasureOps & ConvertOps;
