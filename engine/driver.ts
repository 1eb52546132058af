/**
 * The one interface every format driver implements, and the vocabulary of
 * mappings they answer with. A driver says, for a guest offset, where the
 * bytes live; it never copies guest data and never opens files except through
 * the opener gate. Everything else (info, map, read, convert) is written once,
 * over mappings, in `ops/`.
 */
import type { ByteSource } from './io/source.ts';
import type { Opener } from './io/opener.ts';

/** Bytes at `hostOffset` in `source` (the image file, a data file or an extent). */
export interface DataMapping {
  kind: 'data';
  offset: number;
  length: number;
  source: ByteSource;
  hostOffset: number;
}

/**
 * Reads as zeros because this layer says so (a zero cluster, the tail of a raw
 * file). `host` is set when the zeros still occupy space in a file, which
 * qemu-img map reports as an offset.
 */
export interface ZeroMapping {
  kind: 'zero';
  offset: number;
  length: number;
  host?: { source: ByteSource; hostOffset: number };
}

/** Not allocated in this layer: the next layer down answers (or zeros, at the bottom). */
export interface BackingMapping {
  kind: 'backing';
  offset: number;
  length: number;
}

/** A unit (cluster, grain) that must be decoded whole; the mapping covers part of it. */
export interface CompressedMapping {
  kind: 'compressed';
  offset: number;
  length: number;
  unit: CompressedUnit;
}

export interface CompressedUnit {
  /** Guest offset where the decoded unit starts. */
  guestOffset: number;
  /** Decoded size in bytes. */
  size: number;
  /** Where the encoded bytes are. */
  source: ByteSource;
  hostOffset: number;
  hostLength: number;
}

/** The offset is at or past the end of the layer. */
export interface EofMapping {
  kind: 'eof';
  offset: number;
  length: 0;
}

export type Mapping = DataMapping | ZeroMapping | BackingMapping | CompressedMapping | EofMapping;

/** A reference from one image to another file, exactly as the image stores it. */
export interface BackingRef {
  name: string;
  /** The format the image names for it, if any; otherwise it is probed. */
  format?: string;
}

/** An internal snapshot, in the units qemu-img reports. */
export interface SnapshotInfo {
  id: string;
  name: string;
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  icount?: number;
  /** Guest size when the snapshot was taken, where the format records it. */
  diskSize?: number;
}

/** Picks a snapshot: every given field must match, as qemu's snapshot.id / snapshot.name. */
export interface SnapshotSelector {
  id?: string;
  name?: string;
}

/** A value of qemu's format-specific info: what its QAPI types would serialise. */
export type InfoValue = string | number | boolean | InfoValue[] | { [key: string]: InfoValue };

/** The facts about one layer that `info` reports beyond its size and name. */
export interface LayerFacts {
  clusterSize?: number;
  /** Left out where qemu has no get_info for the format (Parallels): info then prints no dirty-flag. */
  dirty?: boolean;
  encrypted?: boolean;
  /** qemu's `format-specific` object: `{ type, data }`. */
  formatSpecific?: { type: string; data: { [key: string]: InfoValue } };
}

/**
 * What a consistency check found, in the units qemu-img check reports.
 * Counts qemu leaves out when zero may be left undefined.
 */
export interface CheckResult {
  checkErrors: number;
  corruptions: number;
  leaks: number;
  imageEndOffset?: number;
  totalClusters?: number;
  allocatedClusters?: number;
  fragmentedClusters?: number;
  compressedClusters?: number;
  /** The lines qemu-img prints on stderr while it checks ("ERROR cluster 5 refcount=1 reference=2" …), in order. */
  messages: string[];
  /**
   * Set when the check stopped before the end, as qemu's does on an error
   * code: qemu-img then prints no summary, only "Check failed: " and this
   * reason (its strerror text, e.g. "File too large").
   */
  failure?: string;
}

/** One opened layer of an image: one file (plus the files it owns, like a data file). */
export interface Layer {
  /** qemu's name for the format: `qcow2`, `raw`, `vmdk`, `vpc` … */
  readonly format: string;
  readonly source: ByteSource;
  /** Virtual (guest) size in bytes. */
  readonly size: number;
  readonly backing?: BackingRef;
  /**
   * Where the guest range starting at `offset` lives, for as long a run as is
   * uniform (at least one byte, at most `maxLength`). Past the end: `eof`.
   */
  getMapping(offset: number, maxLength: number): Promise<Mapping>;
  /** Decodes a whole compressed unit into `out` (exactly `unit.size` bytes). */
  decode(unit: CompressedUnit, out: Uint8Array): Promise<void>;
  facts(): LayerFacts;
  snapshots(): SnapshotInfo[];
  /** A read-only view of the layer as it was at an internal snapshot. */
  atSnapshot(sel: SnapshotSelector): Promise<Layer>;
  /** Checks the layer's metadata without modifying it; formats qemu cannot check leave this out. */
  check?(signal?: AbortSignal): Promise<CheckResult>;
  /**
   * Asked before guest bytes are read from below this layer; throws when the
   * layer refuses to be read over `lower` (qemu's vmdk refuses a parent whose
   * CID changed after the child was made). Mapping alone does not ask, as
   * qemu's block status does not.
   */
  checkBacking?(lower: Layer): void;
}

export interface OpenContext {
  opener: Opener;
  /**
   * Opened to be checked (qemu's BDRV_O_CHECK, which qemu gives the named
   * image only): damage that the format's check reports must not stop the
   * open, so that `check` can report it.
   */
  forCheck?: boolean;
}

export interface FormatDriver {
  /** qemu's format name. */
  readonly name: string;
  /**
   * How sure the driver is that these leading bytes are its format, as
   * qemu's probe scores: 0 no, 1 fallback (raw), 100 a magic number.
   */
  probe(head: Uint8Array, fileSize: number): number;
  open(source: ByteSource, ctx: OpenContext): Promise<Layer>;
}
