/**
 * Log replay in memory (2.3.3). A VHDX whose current header names a log GUID
 * may hold metadata writes (BAT, metadata, region table) that reached the
 * log but not their place in the file; the spec says they must be replayed
 * before the file is read. The input is never written: the replayed sectors
 * become an overlay, and `ReplayedSource` reads the file through it. qemu-img
 * instead refuses such an image when it opens it read-only (it can only
 * replay by writing the file).
 *
 * The active sequence: the valid entries of the log, each following the one
 * before it in the circular buffer with the next sequence number, ending at
 * the entry with the highest sequence number whose Tail field points back
 * into that chain; it is replayed from the entry Tail names up to that head.
 */
import { ImageFormatError, UnsupportedFeatureError } from '../../errors.ts';
import { LruCache } from '../../cache.ts';
import type { ByteSource } from '../../io/source.ts';
import { checksumWithFieldZeroed } from './header.ts';
import type { VhdxHeader } from './header.ts';
import { crc32c } from '../../codecs/crc32c.ts';
import { assembleSector, dataSectorSequence, descriptorPlace, descriptorSectors, parseDescriptor, parseEntryHeader, type LogEntryHeader } from './log.ts';
import * as L from './layout.ts';

/** Largest log replayed: Hyper-V and qemu write 1 MiB logs; this bounds the scan and the overlay. */
const MAX_LOG_BYTES = 32 * 1024 * 1024;
/** Most descriptors replayed from one sequence (each becomes one overlay operation). */
const MAX_REPLAY_DESCRIPTORS = 256 * 1024;
/** Log sectors are read in chunks of this size, a few kept. */
const LOG_CHUNK = 1024 * 1024;
const LOG_CACHE_BYTES = 4 * 1024 * 1024;
/** The scan checksums at most this many times the log's length: damaged entries claiming the whole log cannot make it quadratic. */
const SCAN_BUDGET_LOGS = 8;
/** Replayed writes must land below this: far beyond any VHDX (64 TiB of data plus metadata) and exact as a double. */
const MAX_FILE_OFFSET = 2 ** 50;

/** A valid log entry: where it starts (in sectors from the log start) and what its header says. */
interface LogEntry {
  sector: number;
  sectors: number;
  header: LogEntryHeader;
}

/** The log's sectors, read on demand through a small cache; sector numbers wrap around the circular buffer. */
class LogReader {
  readonly sectors: number;
  private readonly chunks = new LruCache<number, Uint8Array>(LOG_CACHE_BYTES, (b) => b.length);

  constructor(
    private readonly source: ByteSource,
    readonly offset: number,
    readonly length: number,
  ) {
    this.sectors = length / L.LOG_SECTOR;
  }

  get name(): string {
    return this.source.name;
  }

  /** The file offset of log sector `i` (taken modulo the log). */
  hostOffset(i: number): number {
    return this.offset + (i % this.sectors) * L.LOG_SECTOR;
  }

  async sector(i: number): Promise<Uint8Array> {
    const pos = (i % this.sectors) * L.LOG_SECTOR;
    const start = pos - (pos % LOG_CHUNK);
    const chunk = await this.chunks.getOrLoad(start, () =>
      this.source.read(this.offset + start, Math.min(LOG_CHUNK, this.length - start)),
    );
    return chunk.subarray(pos - start, pos - start + L.LOG_SECTOR);
  }
}

/**
 * The entry starting at log sector `s`, when it is valid (2.3.1): signature,
 * length, sequence number and log GUID, the checksum over the whole entry,
 * every descriptor, and every data sector's signature and sequence number.
 */
async function readEntry(log: LogReader, s: number, logGuid: string, budget: { bytes: number }): Promise<LogEntry | undefined> {
  const first = await log.sector(s);
  const h = parseEntryHeader(first);
  if (!h || h.logGuid !== logGuid || h.sequenceNumber === 0n) return undefined;
  if (h.entryLength === 0 || h.entryLength % L.LOG_SECTOR !== 0 || h.entryLength > log.length) return undefined;
  const sectors = h.entryLength / L.LOG_SECTOR;
  const descSectors = descriptorSectors(h.descriptorCount);
  if (descSectors > sectors) return undefined;

  budget.bytes -= h.entryLength;
  if (budget.bytes < 0) {
    throw new ImageFormatError(log.name, 'log', log.hostOffset(s), 'too many damaged entries to search for the active sequence');
  }
  let crc = checksumWithFieldZeroed(first, L.LE.checksum);
  for (let k = 1; k < sectors; k++) crc = crc32c(await log.sector(s + k), crc);
  if (crc !== h.checksum) return undefined;

  let data = 0;
  for (let i = 0; i < h.descriptorCount; i++) {
    const place = descriptorPlace(i);
    const d = parseDescriptor(await log.sector(s + place.sector), place.at);
    if (!d || d.sequenceNumber !== h.sequenceNumber || d.fileOffset % L.LOG_SECTOR !== 0) return undefined;
    if (d.kind === 'zero' && d.length % L.LOG_SECTOR !== 0) return undefined;
    if (d.kind === 'data') {
      if (descSectors + data >= sectors) return undefined;
      if (dataSectorSequence(await log.sector(s + descSectors + data)) !== h.sequenceNumber) return undefined;
      data++;
    }
  }
  return { sector: s, sectors, header: h };
}

/** Every valid entry in the log, by starting sector. A valid entry is skipped over whole: entries do not overlap. */
async function scanLog(log: LogReader, logGuid: string): Promise<Map<number, LogEntry>> {
  const found = new Map<number, LogEntry>();
  const budget = { bytes: SCAN_BUDGET_LOGS * log.length };
  for (let s = 0; s < log.sectors; ) {
    const entry = await readEntry(log, s, logGuid, budget);
    if (entry) {
      found.set(s, entry);
      s += entry.sectors;
    } else {
      s++;
    }
  }
  return found;
}

/** The entries to replay, oldest first, or none when the log holds no complete sequence. */
function activeSequence(entries: Map<number, LogEntry>, log: LogReader): LogEntry[] {
  const byNewest = [...entries.values()].sort((a, b) => (a.header.sequenceNumber < b.header.sequenceNumber ? 1 : -1));
  for (const head of byNewest) {
    if (head.header.tail % L.LOG_SECTOR !== 0 || head.header.tail >= log.length) continue;
    let e = entries.get(head.header.tail / L.LOG_SECTOR);
    const chain: LogEntry[] = [];
    while (e && chain.length < entries.size) {
      chain.push(e);
      if (e === head) return chain;
      const next = entries.get((e.sector + e.sectors) % log.sectors);
      e = next && next.header.sequenceNumber === e.header.sequenceNumber + 1n ? next : undefined;
    }
  }
  return [];
}

/** One replayed write: zeros over [start, end), or one assembled 4 KiB sector whose data sits in the log at `logHost`. */
interface WriteOp {
  start: number;
  end: number;
  /** Replay order: a later write wins where two overlap. */
  order: number;
  logHost: number;
  leading?: Uint8Array;
  trailing?: Uint8Array;
}

/** A piece of the file that the replay changed; pieces are sorted and disjoint. */
interface Piece {
  start: number;
  end: number;
  /** undefined for zeros. */
  op?: WriteOp;
}

/** Reads the descriptors of the replayed entries into write operations, in replay order. */
async function collectWrites(log: LogReader, sequence: LogEntry[], file: string): Promise<WriteOp[]> {
  const ops: WriteOp[] = [];
  for (const entry of sequence) {
    const h = entry.header;
    const descSectors = descriptorSectors(h.descriptorCount);
    if (ops.length + h.descriptorCount > MAX_REPLAY_DESCRIPTORS) {
      throw new UnsupportedFeatureError(file, `VHDX log replay of more than ${MAX_REPLAY_DESCRIPTORS} descriptors`);
    }
    let data = 0;
    for (let i = 0; i < h.descriptorCount; i++) {
      const place = descriptorPlace(i);
      const d = parseDescriptor(await log.sector(entry.sector + place.sector), place.at)!;
      const length = d.kind === 'zero' ? d.length : L.LOG_SECTOR;
      if (d.fileOffset + length > MAX_FILE_OFFSET) {
        throw new ImageFormatError(file, 'log descriptor', log.hostOffset(entry.sector + place.sector) + place.at, `write of ${length} bytes at ${d.fileOffset} is out of range`);
      }
      if (length === 0) continue;
      const op: WriteOp = { start: d.fileOffset, end: d.fileOffset + length, order: ops.length, logHost: -1 };
      if (d.kind === 'data') {
        op.logHost = log.hostOffset(entry.sector + descSectors + data++);
        op.leading = d.leading;
        op.trailing = d.trailing;
      }
      ops.push(op);
    }
  }
  return ops;
}

/**
 * Flattens the writes into disjoint pieces where the latest write wins: a
 * sweep over the boundaries with a max-heap (by order) of the writes that
 * have started; ended ones are dropped when they reach the top.
 */
function flatten(ops: WriteOp[]): Piece[] {
  const byStart = [...ops].sort((a, b) => a.start - b.start);
  const points = [...new Set(ops.flatMap((o) => [o.start, o.end]))].sort((a, b) => a - b);
  const heap: WriteOp[] = [];
  const push = (o: WriteOp) => {
    heap.push(o);
    for (let i = heap.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (heap[p]!.order >= heap[i]!.order) break;
      [heap[p], heap[i]] = [heap[i]!, heap[p]!];
      i = p;
    }
  };
  const pop = () => {
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && heap[l]!.order > heap[m]!.order) m = l;
      if (r < heap.length && heap[r]!.order > heap[m]!.order) m = r;
      if (m === i) break;
      [heap[m], heap[i]] = [heap[i]!, heap[m]!];
      i = m;
    }
  };
  const pieces: Piece[] = [];
  let next = 0;
  for (let k = 0; k + 1 < points.length; k++) {
    const p = points[k]!;
    while (next < byStart.length && byStart[next]!.start <= p) push(byStart[next++]!);
    while (heap.length > 0 && heap[0]!.end <= p) pop();
    const top = heap[0];
    if (!top) continue;
    const op = top.logHost < 0 ? undefined : top;
    const prev = pieces[pieces.length - 1];
    // Adjacent zero pieces merge; data pieces stay one sector each.
    if (prev && !op && !prev.op && prev.end === p) prev.end = points[k + 1]!;
    else pieces.push({ start: p, end: points[k + 1]!, op });
  }
  return pieces;
}

/** The file as it reads after the replay: the file's own bytes, with the replayed pieces laid over them. */
export class ReplayedSource implements ByteSource {
  readonly name: string;

  constructor(
    private readonly base: ByteSource,
    private readonly pieces: Piece[],
    readonly size: number,
  ) {
    this.name = base.name;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const out = await this.base.read(offset, length, into);
    const end = offset + length;
    let lo = 0;
    let hi = this.pieces.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.pieces[mid]!.end <= offset) lo = mid + 1;
      else hi = mid;
    }
    const sector = new Uint8Array(L.LOG_SECTOR);
    for (let i = lo; i < this.pieces.length && this.pieces[i]!.start < end; i++) {
      const p = this.pieces[i]!;
      const from = Math.max(offset, p.start);
      const to = Math.min(end, p.end);
      if (!p.op) {
        out.fill(0, from - offset, to - offset);
        continue;
      }
      assembleSector(await this.base.read(p.op.logHost, L.LOG_SECTOR), p.op.leading!, p.op.trailing!, sector);
      out.set(sector.subarray(from - p.start, to - p.start), from - offset);
    }
    return out;
  }
}

/**
 * Replays the log that `header` describes, if it holds an active sequence.
 * Returns the file as it reads after the replay, or undefined when there is
 * nothing to replay.
 */
export async function replayLog(source: ByteSource, header: VhdxHeader): Promise<ReplayedSource | undefined> {
  const file = source.name;
  if (header.logLength % L.LOG_ALIGNMENT !== 0) {
    throw new ImageFormatError(file, 'VHDX header', header.fileOffset + L.H.logLength, `log length ${header.logLength} is not a multiple of 1 MiB`);
  }
  // A log past the end of the file reads as zeros: it holds no entries.
  if (header.logOffset >= source.size) return undefined;
  if (header.logLength > MAX_LOG_BYTES) {
    throw new UnsupportedFeatureError(file, `replay of a VHDX log of ${header.logLength} bytes (at most ${MAX_LOG_BYTES})`);
  }
  const log = new LogReader(source, header.logOffset, header.logLength);
  const sequence = activeSequence(await scanLog(log, header.logGuid), log);
  if (sequence.length === 0) return undefined;

  let size = source.size;
  for (const entry of sequence) {
    const h = entry.header;
    // 2.3.1.1: a file shorter than FlushedFileOffset lost writes the log relies on.
    if (h.flushedFileOffset > source.size) {
      throw new ImageFormatError(file, 'log entry', log.hostOffset(entry.sector), `the file (${source.size} bytes) is shorter than the log's flushed file offset ${h.flushedFileOffset}: it was truncated`);
    }
    if (h.lastFileOffset > MAX_FILE_OFFSET) {
      throw new ImageFormatError(file, 'log entry', log.hostOffset(entry.sector), `last file offset ${h.lastFileOffset} is out of range`);
    }
    size = Math.max(size, h.lastFileOffset);
  }
  const ops = await collectWrites(log, sequence, file);
  for (const op of ops) size = Math.max(size, op.end);
  return new ReplayedSource(source, flatten(ops), size);
}
