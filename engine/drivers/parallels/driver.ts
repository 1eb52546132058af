/**
 * The Parallels driver: expandable images in both header flavours
 * ("WithoutFreeSpace", BAT entries in sectors; "WithouFreSpacExt", entries in
 * clusters). A zero BAT entry, or a cluster past the end of a short BAT, is
 * not allocated: qemu lets such a range fall through to a backing file, and
 * reports it as not present, so it maps as `backing`. The header names no
 * backing file, so at the bottom of a chain it reads as zeros.
 */
import { ImageFormatError, UnsupportedFeatureError } from '../../errors.ts';
import type { ByteSource } from '../../io/source.ts';
import type { CheckResult, FormatDriver, Layer, LayerFacts, Mapping, OpenContext } from '../../driver.ts';
import { BlockTable } from '../block-table.ts';
import { noSnapshot, viewOf } from '../common.ts';
import { checkExtension, parseHeader, type ParallelsHeader } from './header.ts';
import { checkParallels } from './check.ts';
import * as L from './layout.ts';

const STRUCTURE = 'Parallels block allocation table';
/** Entries a checked BAT may have beyond what the file holds (they read as zeros). */
const CHECK_SLACK = 2 ** 26;
const hex = (n: number) => '0x' + n.toString(16);

class ParallelsLayer implements Layer {
  readonly format = 'parallels';
  readonly size: number;
  private readonly clusterSize: number;

  constructor(
    readonly source: ByteSource,
    private readonly header: ParallelsHeader,
    private readonly bat: BlockTable,
  ) {
    this.size = header.size;
    this.clusterSize = header.tracks * L.SECTOR;
  }

  async getMapping(offset: number, maxLength: number): Promise<Mapping> {
    if (offset >= this.size) return { kind: 'eof', offset, length: 0 };
    const cs = this.clusterSize;
    const end = Math.min(this.size, offset + maxLength);
    const first = Math.floor(offset / cs);
    const endCluster = Math.ceil(end / cs);
    // Clusters past the end of the BAT are unallocated.
    if (first >= this.bat.entries) return { kind: 'backing', offset, length: end - offset };
    let firstEntry = 0;
    // One answer for a run of clusters that are all unallocated, or allocated back to back.
    let stop = await this.bat.walk(first, endCluster, (i, entry) => {
      if (i === first) {
        firstEntry = entry;
        return true;
      }
      return firstEntry === 0 ? entry === 0 : entry * this.header.batUnit === firstEntry * this.header.batUnit + (i - first) * cs;
    });
    if (firstEntry === 0) {
      if (stop === this.bat.entries) stop = endCluster;
      return { kind: 'backing', offset, length: Math.min(end, stop * cs) - offset };
    }
    const hostOffset = firstEntry * this.header.batUnit + (offset % cs);
    return { kind: 'data', offset, length: Math.min(end, stop * cs) - offset, source: this.source, hostOffset };
  }

  async decode(): Promise<void> {
    throw new Error('parallels has no compressed units');
  }

  facts(): LayerFacts {
    // qemu has no get_info for Parallels: info shows neither a cluster size nor a dirty flag.
    return {};
  }

  snapshots() {
    return [];
  }

  atSnapshot(): Promise<Layer> {
    return noSnapshot(this.source);
  }

  /** qemu-img check's findings, on the image as qemu reads it (see `checkBat`). */
  check(signal?: AbortSignal): Promise<CheckResult> {
    return checkParallels(this.source, this.header, this.bat, signal);
  }
}

/**
 * The BAT must lie inside the file, and so must every cluster it uses: qemu
 * reads what is missing as zeros, which hides a truncated or damaged image;
 * this engine refuses it, naming the entry. Opened for a check, the image is
 * read as qemu reads it, so that the check finds what qemu-img's does; only a
 * BAT longer than the file could hold by CHECK_SLACK entries is refused, as
 * walking it would take time no file bounds.
 */
async function checkBat(source: ByteSource, h: ParallelsHeader, forCheck: boolean): Promise<BlockTable> {
  const bytes = h.batEntries * 4;
  if (forCheck ? h.batEntries > source.size / 4 + CHECK_SLACK : L.HEADER_BYTES + bytes > source.size) {
    throw new ImageFormatError(
      source.name,
      STRUCTURE,
      L.HEADER_BYTES,
      `table of ${bytes} bytes (${h.batEntries} entries) runs past the end of the file (${source.size} bytes)`,
    );
  }
  const bat = new BlockTable(source, L.HEADER_BYTES, h.batEntries);
  if (forCheck) return bat;
  const cs = h.tracks * L.SECTOR;
  let bad: { index: number; entry: number } | undefined;
  await bat.walk(0, Math.ceil(h.size / cs), (index, entry) => {
    if (entry !== 0 && entry * h.batUnit + cs > source.size) bad = { index, entry };
    return bad === undefined;
  });
  if (bad) {
    throw new ImageFormatError(
      source.name,
      STRUCTURE,
      L.HEADER_BYTES + bad.index * 4,
      `cluster ${bad.index} is mapped to ${hex(bad.entry * h.batUnit)}, which runs past the end of the file (${source.size} bytes)`,
    );
  }
  return bat;
}

/** qemu refuses an image whose Format Extension is damaged, so this engine does too. */
async function readExtension(source: ByteSource, h: ParallelsHeader): Promise<void> {
  const cs = h.tracks * L.SECTOR;
  // Past the end of the file the cluster reads as zeros, as in qemu, and its magic is wrong.
  const at = h.extOffset < BigInt(source.size) ? Number(h.extOffset) : source.size;
  if (at < source.size && cs > L.MAX_EXT_CLUSTER) throw new UnsupportedFeatureError(source.name, `Parallels Format Extension in a cluster of ${cs} bytes`);
  const cluster = await source.read(at, at < source.size ? cs : 8);
  checkExtension(cluster, source.name, Number(h.extOffset), h.size / L.SECTOR);
}

async function open(source: ByteSource, ctx: OpenContext): Promise<Layer> {
  const header = parseHeader(await source.read(0, L.HEADER_BYTES), source.name);
  const bat = await checkBat(source, header, ctx.forCheck ?? false);
  if (header.extOffset !== 0n) await readExtension(source, header);
  return new ParallelsLayer(source, header, bat);
}

const decoder = new TextDecoder('latin1');

export const parallelsDriver: FormatDriver = {
  name: 'parallels',
  // qemu probes a zero-padded buffer, so a file shorter than the header can still be a Parallels image.
  probe: (head) => {
    if (head.length < L.H.version + 4) return 0;
    const magic = decoder.decode(head.subarray(L.H.magic, L.H.magic + 16));
    return (magic === L.MAGIC || magic === L.MAGIC_EXT) && viewOf(head).getUint32(L.H.version, true) === L.VERSION ? 100 : 0;
  },
  open,
};
