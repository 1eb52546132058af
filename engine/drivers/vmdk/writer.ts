/**
 * Writing VMDK: monolithicSparse (qemu's default), streamOptimized and
 * monolithicFlat, with qemu-img's `-o` options. A monolithicSparse file is
 * laid out as qemu lays it out (both grain directories and every grain table
 * preallocated before the first grain); a stream-optimized file follows
 * VMware's stream layout, written strictly front to back: header with
 * GD_AT_END, compressed grains with markers, each grain table after its
 * grains, the grain directory, the footer and the end-of-stream marker.
 * monolithicFlat is a descriptor file and a raw `NAME-flat.EXT` extent.
 * The CID is random, as qemu's and VMware's are.
 */
import { zlibSync } from 'fflate';
import type { ByteSink } from '../../io/sink.ts';
import { boolOption, type BlockWriter, type CreateOptions, type FormatWriter, type SinkOpener } from '../../writer.ts';
import { OptionError, OptionValueError, UnsupportedFeatureError } from '../../errors.ts';
import * as B from './build.ts';
import * as L from './layout.ts';

const SUBFORMATS = ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized'];
/** parentCID of an image with no parent. */
const NO_PARENT_CID = 0xffffffff;
/** The unit of a flat extent: like raw, zero runs of 4 KiB or more are left as holes. */
const FLAT_UNIT = 4096;
/** Stream output is gathered into writes of this size. */
const STREAM_BUFFER = 1024 * 1024;
/** Grain directory bytes written per step. */
const GD_CHUNK_ENTRIES = 64 * 1024;

/** `-B` as the writer sees it; `facts` (the backing image's top layer) carry the parent's CID. */
type BackingDescription = NonNullable<CreateOptions['backing']>;

interface VmdkSettings {
  subformat: string;
  capacity: number;
  zeroedGrain: boolean;
  descriptor: Omit<B.DescriptorFields, 'createType' | 'extents'>;
}

/** A random CID, never 0xffffffff ("no parent") nor 0xfffffffe, which VMware also keeps for itself. */
function randomCid(): number {
  const c = new Uint32Array(1);
  do crypto.getRandomValues(c);
  while (c[0]! >= 0xfffffffe);
  return c[0]!;
}

/** The part of a path after its last separator. */
const baseName = (path: string) => path.slice(Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1);

/** qemu names a flat extent after its descriptor: `disk.vmdk` → `disk-flat.vmdk`, `disk` → `disk-flat`. */
export function flatExtentName(descriptorName: string): string {
  const base = baseName(descriptorName);
  const dot = base.lastIndexOf('.');
  return dot < 0 ? `${base}-flat` : `${base.slice(0, dot)}-flat${base.slice(dot)}`;
}

function settings(opts: CreateOptions): VmdkSettings {
  const subformat = opts.options.get('subformat') ?? 'monolithicSparse';
  if (!SUBFORMATS.includes(subformat)) throw new OptionValueError(`invalid parameter value: ${subformat}`);
  const adapter = opts.options.get('adapter_type') ?? 'ide';
  if (!(B.ADAPTER_TYPES as readonly string[]).includes(adapter)) throw new OptionValueError(`invalid parameter value: ${adapter}`);
  const compat6 = boolOption(opts, 'compat6') ?? false;
  const zeroedGrain = boolOption(opts, 'zeroed_grain') ?? false;
  const hw = opts.options.get('hwversion');
  if (compat6 && hw !== undefined && hw !== 'undefined') throw new OptionValueError('compat6 cannot be enabled with hwversion set');
  const prealloc = opts.options.get('preallocation');
  // falloc only asks the host to reserve space, which changes no byte of the image.
  if (prealloc !== undefined && prealloc !== 'off' && prealloc !== 'falloc') throw new OptionValueError(`Unsupported preallocation mode: ${prealloc}`);
  if (subformat.startsWith('twoGbMaxExtent')) throw new UnsupportedFeatureError('', `writing the VMDK subformat ${subformat}`);

  const backing = opts.backing as BackingDescription | undefined;
  let parentCid = NO_PARENT_CID;
  if (backing) {
    if (backing.format !== undefined && backing.format !== 'vmdk') throw new OptionValueError('backing_file must be a vmdk image');
    if (subformat === 'monolithicFlat') throw new OptionValueError("Flat image can't have backing file");
    // A child's parentCID must be its parent's CID, or reads through to the parent fail.
    if (!backing.facts) throw new UnsupportedFeatureError('', "a VMDK parent link without the parent's CID");
    const cid = backing.facts.formatSpecific?.data['cid'];
    if (typeof cid !== 'number') throw new OptionValueError('backing_file must be a vmdk image');
    parentCid = cid;
  }
  if (opts.compress && subformat === 'monolithicFlat') throw new OptionError('invalid cluster size');

  // qemu sizes a VMDK in whole sectors.
  const capacity = Math.ceil(opts.size / L.SECTOR);
  // An empty sparse extent reads as a mere descriptor carrier, an empty flat one as no disk: qemu opens neither.
  if (capacity === 0) throw new OptionValueError('a VMDK image needs a size of at least one sector');
  if (subformat !== 'monolithicFlat' && B.hostedLayout(capacity).gtCount > L.MAX_GD_ENTRIES) {
    throw new OptionValueError(`a VMDK sparse extent of ${capacity} sectors needs more than the ${L.MAX_GD_ENTRIES} grain tables qemu reads`);
  }
  return {
    subformat,
    capacity,
    zeroedGrain,
    descriptor: {
      cid: randomCid(),
      parentCid,
      parentFileNameHint: backing?.name,
      hwVersion: compat6 ? '6' : hw !== undefined && hw !== 'undefined' ? hw : '4',
      geometry: B.geometry(capacity, adapter as B.AdapterType),
      adapterType: adapter as B.AdapterType,
      toolsVersion: opts.options.get('toolsversion') ?? '2147483647',
    },
  };
}

/** The descriptor as bytes, zero-padded to whole sectors; at most `maxSectors` when it is embedded. */
function descriptorBytes(s: VmdkSettings, createType: string, extent: string, maxSectors?: number): Uint8Array {
  const text = new TextEncoder().encode(B.descriptorText({ ...s.descriptor, createType, extents: [extent] }));
  const sectors = Math.ceil(text.length / L.SECTOR);
  if (maxSectors !== undefined && sectors > maxSectors) {
    throw new OptionValueError(`the descriptor needs ${text.length} bytes, more than the ${maxSectors * L.SECTOR} reserved for it`);
  }
  const out = new Uint8Array(sectors * L.SECTOR);
  out.set(text);
  return out;
}

/** The header sector followed by the embedded descriptor. */
function headAndDescriptor(header: Uint8Array, descriptor: Uint8Array): Uint8Array {
  const out = new Uint8Array((B.DESC_OFFSET + B.DESC_SECTORS) * L.SECTOR);
  out.set(header);
  out.set(descriptor, B.DESC_OFFSET * L.SECTOR);
  return out;
}

/** A grain table being filled while the grains it covers arrive in order. */
class TableBuilder {
  readonly entries = new Uint32Array(B.GTES_PER_GT);
  /** Index of the table in the directory; -1 before the first grain. */
  index = -1;
  used = false;

  /** Moves to the table of `grain`; returns the previous table's index when it holds entries and must be written first. */
  moveTo(grain: number): number | undefined {
    const index = Math.floor(grain / B.GTES_PER_GT);
    if (index === this.index) return undefined;
    const done = this.used ? this.index : undefined;
    this.index = index;
    this.used = false;
    return done;
  }

  set(grain: number, value: number): void {
    this.entries[grain % B.GTES_PER_GT] = value;
    this.used = true;
  }

  /** The table's bytes, and the builder emptied for the next one. */
  take(): Uint8Array {
    const bytes = B.tableBytes(this.entries);
    this.entries.fill(0);
    this.used = false;
    return bytes;
  }
}

function checkSector(sector: number, file: string): number {
  if (sector > B.MAX_GTE_SECTOR) throw new UnsupportedFeatureError(file, 'a VMDK sparse file past 2 TiB (grain table entries are 32-bit sector numbers)');
  return sector;
}

/**
 * monolithicSparse: grains appended after the preallocated metadata, in
 * guest order; each grain table is written (to both copies) once the
 * grains it covers are behind.
 */
class HostedSparseWriter implements BlockWriter {
  readonly blockSize = B.GRAIN_BYTES;
  private readonly layout: B.HostedLayout;
  private readonly table = new TableBuilder();
  /** Where the next grain goes, in bytes. */
  private next: number;

  constructor(
    private readonly sink: ByteSink,
    private readonly s: VmdkSettings,
  ) {
    this.layout = B.hostedLayout(s.capacity);
    this.next = this.layout.overHead * L.SECTOR;
  }

  async start(): Promise<void> {
    const header = B.sparseHeader({
      version: this.s.zeroedGrain ? 2 : 1,
      flags: L.FLAG_NL_DETECT | L.FLAG_RGD | (this.s.zeroedGrain ? L.FLAG_ZEROED_GRAIN : 0),
      capacity: this.s.capacity,
      rgdOffset: this.layout.rgdOffset,
      gdOffset: this.layout.gdOffset,
      overHead: this.layout.overHead,
      compressAlgorithm: 0,
    });
    const desc = descriptorBytes(this.s, 'monolithicSparse', `RW ${this.s.capacity} SPARSE "${baseName(this.sink.name)}"`, B.DESC_SECTORS);
    await this.sink.write(0, headAndDescriptor(header, desc));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const first = offset / B.GRAIN_BYTES;
    const count = Math.ceil(data.length / B.GRAIN_BYTES);
    // Consecutive units go to consecutive grains: one write.
    const at = this.next;
    for (let i = 0; i < count; i++) await this.point(first + i, this.allocate());
    await this.sink.write(at, data);
  }

  /** Never called: a monolithicSparse writer sets no codec, so `-c` stores grains as they are (as qemu does). */
  writeCompressed(offset: number, _packed: Uint8Array, raw: Uint8Array): Promise<void> {
    return this.write(offset, raw);
  }

  /** Zeroed-grain entries where enabled; otherwise grains of zeros, which the sink leaves unwritten. */
  async writeZero(offset: number, length: number): Promise<void> {
    const first = offset / B.GRAIN_BYTES;
    for (let i = 0; i < Math.ceil(length / B.GRAIN_BYTES); i++) {
      await this.point(first + i, this.s.zeroedGrain ? L.GTE_ZEROED : this.allocate());
    }
  }

  private allocate(): number {
    const sector = checkSector(this.next / L.SECTOR, this.sink.name);
    this.next += B.GRAIN_BYTES;
    return sector;
  }

  private async point(grain: number, value: number): Promise<void> {
    const done = this.table.moveTo(grain);
    if (done !== undefined) await this.writeTable(done);
    this.table.set(grain, value);
  }

  private async writeTable(index: number): Promise<void> {
    const bytes = this.table.take();
    await this.sink.write(B.tableSector(this.layout, this.layout.rgdOffset, index) * L.SECTOR, bytes);
    await this.sink.write(B.tableSector(this.layout, this.layout.gdOffset, index) * L.SECTOR, bytes);
  }

  async finish(): Promise<void> {
    if (this.table.used) await this.writeTable(this.table.index);
    await this.writeDirectory(this.layout.rgdOffset);
    await this.writeDirectory(this.layout.gdOffset);
    await this.sink.commit(this.next);
  }

  /** Every directory entry points at its preallocated table, whether or not the table holds entries (as qemu's do). */
  private async writeDirectory(dirOffset: number): Promise<void> {
    const n = this.layout.gtCount;
    for (let i = 0; i < n; i += GD_CHUNK_ENTRIES) {
      const entries = new Uint32Array(Math.min(GD_CHUNK_ENTRIES, n - i));
      for (let j = 0; j < entries.length; j++) entries[j] = B.tableSector(this.layout, dirOffset, i + j);
      await this.sink.write(dirOffset * L.SECTOR + i * 4, B.tableBytes(entries));
    }
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }
}

/** Bytes appended strictly in order, gathered into large writes. */
class Appender {
  private buf = new Uint8Array(STREAM_BUFFER);
  private used = 0;
  /** File offset of buf[0]. */
  private base: number;

  constructor(
    private readonly sink: ByteSink,
    start: number,
  ) {
    this.base = start;
  }

  get position(): number {
    return this.base + this.used;
  }

  /** Room for `length` bytes at the end, zero-filled; the caller fills it before the next call. */
  async reserve(length: number): Promise<Uint8Array> {
    if (this.used + length > this.buf.length) await this.flush();
    if (length > this.buf.length) this.buf = new Uint8Array(length);
    const bytes = this.buf.subarray(this.used, this.used + length);
    this.used += length;
    bytes.fill(0);
    return bytes;
  }

  async append(data: Uint8Array): Promise<void> {
    (await this.reserve(data.length)).set(data);
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    await this.sink.write(this.base, this.buf.subarray(0, this.used));
    this.base += this.used;
    this.used = 0;
  }
}

/**
 * streamOptimized, as VMware's note describes it: every grain compressed
 * (zlib) behind a grain marker; a grain table, behind its marker, as soon as
 * the grains it covers are written (tables with no entries are left out,
 * their directory entry 0); then the directory, the footer (the header
 * again, with the directory's offset) and the end-of-stream marker.
 */
class StreamWriter implements BlockWriter {
  readonly blockSize = B.GRAIN_BYTES;
  readonly codec = 'zlib' as const;
  private readonly out: Appender;
  private readonly table = new TableBuilder();
  /** Directory entries that are not 0, in increasing table order: [table index, sector]. */
  private readonly directory: [number, number][] = [];
  private readonly gtCount: number;
  private zeroGrain: Uint8Array | undefined;

  constructor(
    private readonly sink: ByteSink,
    private readonly s: VmdkSettings,
  ) {
    this.out = new Appender(sink, 0);
    this.gtCount = B.hostedLayout(s.capacity).gtCount;
  }

  private header(gdOffset: number | 'end'): Uint8Array {
    return B.sparseHeader({
      version: 3,
      flags: L.FLAG_NL_DETECT | L.FLAG_COMPRESSED | L.FLAG_MARKERS | (this.s.zeroedGrain ? L.FLAG_ZEROED_GRAIN : 0),
      capacity: this.s.capacity,
      rgdOffset: 0,
      gdOffset,
      overHead: B.STREAM_OVERHEAD,
      compressAlgorithm: L.COMPRESSION_DEFLATE,
    });
  }

  async start(): Promise<void> {
    const desc = descriptorBytes(this.s, 'streamOptimized', `RW ${this.s.capacity} SPARSE "${baseName(this.sink.name)}"`, B.DESC_SECTORS);
    // The whole first grain is written, zeros included, so the stream has no gap.
    const head = new Uint8Array(B.STREAM_OVERHEAD * L.SECTOR);
    head.set(headAndDescriptor(this.header('end'), desc));
    await this.out.append(head);
  }

  /** Units the pipeline did not compress (no compressor at hand): compressed here, the same way. */
  async write(offset: number, data: Uint8Array): Promise<void> {
    for (let at = 0; at < data.length; at += B.GRAIN_BYTES) {
      await this.grain(offset + at, zlibSync(data.subarray(at, Math.min(data.length, at + B.GRAIN_BYTES)), { level: 6 }));
    }
  }

  /** Every grain of a stream-optimized extent is compressed, even where packing did not pay. */
  writeCompressed(offset: number, packed: Uint8Array): Promise<void> {
    return this.grain(offset, packed);
  }

  async writeZero(offset: number, length: number): Promise<void> {
    for (let at = 0; at < length; at += B.GRAIN_BYTES) {
      const grain = (offset + at) / B.GRAIN_BYTES;
      if (this.s.zeroedGrain) {
        await this.enterTable(grain);
        this.table.set(grain, L.GTE_ZEROED);
      } else {
        this.zeroGrain ??= zlibSync(new Uint8Array(B.GRAIN_BYTES), { level: 6 });
        await this.grain(offset + at, this.zeroGrain);
      }
    }
  }

  private async grain(offset: number, packed: Uint8Array): Promise<void> {
    const grain = offset / B.GRAIN_BYTES;
    // The previous table goes out first: the grain's place is after it.
    await this.enterTable(grain);
    this.table.set(grain, checkSector(this.out.position / L.SECTOR, this.sink.name));
    B.putGrainRecord(await this.out.reserve(B.grainRecordBytes(packed.length)), grain * B.GRAIN_SECTORS, packed);
  }

  private async enterTable(grain: number): Promise<void> {
    const done = this.table.moveTo(grain);
    if (done !== undefined) await this.writeTable(done);
  }

  private async writeTable(index: number): Promise<void> {
    await this.out.append(B.metadataMarker(B.GT_SECTORS, L.MARKER_GT));
    this.directory.push([index, this.out.position / L.SECTOR]);
    await this.out.append(this.table.take());
  }

  async finish(): Promise<void> {
    if (this.table.used) await this.writeTable(this.table.index);
    const gdSectors = Math.ceil((this.gtCount * 4) / L.SECTOR);
    await this.out.append(B.metadataMarker(gdSectors, L.MARKER_GD));
    const gdOffset = this.out.position / L.SECTOR;
    // The directory fills whole sectors; entries past the last table are 0.
    const gdEntries = (gdSectors * L.SECTOR) / 4;
    let next = 0;
    for (let i = 0; i < gdEntries; i += GD_CHUNK_ENTRIES) {
      const entries = new Uint32Array(Math.min(GD_CHUNK_ENTRIES, gdEntries - i));
      for (; next < this.directory.length && this.directory[next]![0] < i + entries.length; next++) {
        const [index, sector] = this.directory[next]!;
        entries[index - i] = sector;
      }
      await this.out.append(B.tableBytes(entries));
    }
    await this.out.append(B.metadataMarker(1, L.MARKER_FOOTER));
    await this.out.append(this.header(gdOffset));
    await this.out.append(B.metadataMarker(0, L.MARKER_EOS));
    await this.out.flush();
    await this.sink.commit(this.out.position);
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }
}

/** monolithicFlat: the guest bytes in the extent file at their own offsets; the descriptor file is written last. */
class FlatWriter implements BlockWriter {
  readonly blockSize = FLAT_UNIT;

  constructor(
    private readonly descriptorSink: ByteSink,
    private readonly extent: ByteSink,
    private readonly s: VmdkSettings,
  ) {}

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.extent.write(offset, data);
  }

  writeCompressed(offset: number, _packed: Uint8Array, raw: Uint8Array): Promise<void> {
    return this.extent.write(offset, raw);
  }

  /** A flat image has no backing file, so zeros are what an unwritten range reads as. */
  async writeZero(): Promise<void> {}

  async finish(): Promise<void> {
    const desc = descriptorBytes(this.s, 'monolithicFlat', `RW ${this.s.capacity} FLAT "${baseName(this.extent.name)}" 0`);
    await this.extent.commit(this.s.capacity * L.SECTOR);
    await this.descriptorSink.write(0, desc);
    await this.descriptorSink.commit(desc.length);
  }

  async abort(): Promise<void> {
    await this.extent.abort();
    await this.descriptorSink.abort();
  }
}

export const vmdkWriter: FormatWriter = {
  name: 'vmdk',
  optionNames: [
    'size',
    'adapter_type',
    'backing_file',
    'backing_fmt',
    'compat6',
    'extent_size_hint',
    'hwversion',
    'nocow',
    'preallocation',
    'subformat',
    'toolsversion',
    'zeroed_grain',
  ],
  async create(sink: ByteSink, opts: CreateOptions, openSink: SinkOpener): Promise<BlockWriter> {
    const s = settings(opts);
    if (s.subformat === 'monolithicFlat') return new FlatWriter(sink, await openSink(flatExtentName(sink.name)), s);
    const w = s.subformat === 'streamOptimized' ? new StreamWriter(sink, s) : new HostedSparseWriter(sink, s);
    await w.start();
    return w;
  },
};
