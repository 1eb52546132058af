/**
 * The interface every format writer implements. `convert` (engine/ops/
 * convert.ts) reads the source once, decides per allocation unit whether it is
 * data, zero or absent, compresses units in parallel when asked, and hands the
 * writer whole units in increasing guest order; the writer only lays out its
 * format's structures in the sink. Writers never read the source and never
 * open files except through the sinks they are given.
 */
import type { ByteSink } from './io/sink.ts';
import type { LayerFacts } from './driver.ts';
import { OptionError } from './errors.ts';

/**
 * The codecs a writer may ask the pipeline to compress units with.
 * `deflate-raw-4k`: raw deflate whose matches reach back at most 4 KiB, because
 * qemu inflates qcow2 clusters with a 4 KiB window. `zlib`: RFC 1950 (VMDK grains).
 */
export type Codec = 'deflate-raw-4k' | 'zlib';

/** What a writer is asked to produce. */
export interface CreateOptions {
  /** Guest size in bytes. */
  size: number;
  /** qemu-img's `-o` options, as given (`cluster_size` → `65536`, `compat` → `1.1`); sizes unparsed. */
  options: ReadonlyMap<string, string>;
  /** `-c`: store units compressed where the format can. */
  compress: boolean;
  /**
   * `-B` / `-o backing_file`: recorded in the new image; units equal to it are
   * left out by the pipeline. `facts` are the opened backing file's, for
   * formats that record something of their parent (VMDK's parent CID).
   */
  backing?: { name: string; format?: string; facts?: LayerFacts };
}

export interface BlockWriter {
  /**
   * The unit in guest bytes (a cluster, a grain, a block or part of one; at
   * most 4 MiB): zero detection works on whole units, and data arrives as
   * runs of whole, aligned units.
   */
  readonly blockSize: number;
  /** Set when the writer stores compressed units: the codec the pipeline must use. */
  readonly codec?: Codec;
  /**
   * With `codec`: a short last unit is compressed padded with zeros to a
   * whole unit (qcow2 decompresses whole clusters, so qemu compresses the
   * disk's last cluster padded, where VMDK compresses a short last grain as
   * it is).
   */
  readonly padsLastUnit?: boolean;
  /**
   * Data for the consecutive units starting at `offset` (a whole number of
   * units; the last unit of the disk may be short). Offsets only increase.
   * `data` is only valid until the returned promise settles.
   */
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * One unit stored compressed: `packed` is `raw` encoded with `codec`. The
   * writer may store `raw` instead when packing did not pay (as qemu does).
   */
  writeCompressed(offset: number, packed: Uint8Array, raw: Uint8Array): Promise<void>;
  /** Units that must read as zero although the backing file has data there (only with a backing file). */
  writeZero(offset: number, length: number): Promise<void>;
  /** Writes the remaining metadata and commits every sink: the output then exists, complete, under its final name. */
  finish(): Promise<void>;
  /** Discards everything: no output remains. */
  abort(): Promise<void>;
}

/** Opens the sinks a writer needs beyond the main one (VMDK extent files), named relative to the output. */
export type SinkOpener = (name: string) => Promise<ByteSink>;

export interface FormatWriter {
  /** qemu's format name. */
  readonly name: string;
  /** The `-o` option names this writer accepts; others are refused (qemu-img's "Invalid parameter") before anything is written. */
  readonly optionNames: readonly string[];
  create(sink: ByteSink, opts: CreateOptions, openSink: SinkOpener): Promise<BlockWriter>;
}

/** A guest range that holds data in the source (neither zero nor absent). */
export interface DataRange {
  start: number;
  length: number;
}

/** qemu-img measure's answer, in bytes. */
export interface Measurement {
  required: number;
  fullyAllocated: number;
  /** qcow2 only: bytes of persistent bitmaps that would be copied. */
  bitmaps?: number;
}

/** What `measure` is told beyond the target's options: the source image's format, absent with `--size`. */
export interface MeasureOptions extends CreateOptions {
  source?: { format: string };
}

/** Formats qemu-img can measure implement this next to their writer. */
export interface FormatMeasurer {
  readonly name: string;
  /** `data` lists the source's data ranges in order; empty for `--size`. */
  measure(opts: MeasureOptions, data: AsyncIterable<DataRange>): Promise<Measurement>;
}

/** A boolean option as qemu parses them (on/yes/true/y, off/no/false/n); undefined when not given. */
export function boolOption(opts: CreateOptions, name: string): boolean | undefined {
  const text = opts.options.get(name);
  if (text === undefined) return undefined;
  if (['on', 'yes', 'true', 'y'].includes(text)) return true;
  if (['off', 'no', 'false', 'n'].includes(text)) return false;
  throw new OptionError(`Parameter '${name}' expects 'on' or 'off'`);
}

/** Parses a size option value as qemu does ("64k", "2M", plain bytes). */
export function sizeOption(opts: CreateOptions, name: string, fallback: number): number {
  const text = opts.options.get(name);
  if (text === undefined) return fallback;
  const m = /^(\d+)([kKMGT]?)$/.exec(text.trim());
  if (!m) {
    throw new OptionError(
      `Parameter '${name}' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.`,
    );
  }
  return Number(m[1]) * 1024 ** ({ '': 0, k: 1, K: 1, M: 2, G: 3, T: 4 }[m[2]!] ?? 0);
}
