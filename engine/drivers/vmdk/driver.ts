/**
 * The VMDK driver: monolithic sparse and stream-optimized files (the
 * descriptor embedded at sector 1), and text descriptors whose extents —
 * FLAT, VMFS, SPARSE, VMFSSPARSE (KDMV or COWD files), SESPARSE — live in
 * other files, opened through the opener gate by the names the descriptor
 * gives, taken from the descriptor's folder as qemu takes them. It follows
 * qemu 7.2's reading of the format, including its quirks, so info, map and
 * convert agree with qemu-img; the parent (parentFileNameHint) is only
 * named here and opened by the image's chain like any backing file.
 */
import { ImageFormatError } from '../../errors.ts';
import type { ByteSource } from '../../io/source.ts';
import type { BackingRef, CompressedUnit, FormatDriver, InfoValue, Layer, LayerFacts, Mapping, OpenContext } from '../../driver.ts';
import { noSnapshot, viewOf } from '../common.ts';
import { DescriptorError, parentHint, readCid } from './descriptor.ts';
import { FlatExtent, SparseExtent, type Extent } from './extents.ts';
import * as L from './layout.ts';
import { Opening, readText } from './opening.ts';

interface VmdkState {
  createType: string;
  cid: number;
  parentCid: number;
  /** Where CID and parentCID were read (0 in a descriptor file, 512 in a sparse file). */
  descOffset: number;
}

class VmdkLayer implements Layer {
  readonly format = 'vmdk';
  readonly size: number;
  private readonly starts: number[];
  /** The parent's CID was found to match once; qemu checks only until then. */
  private parentChecked = false;

  constructor(
    readonly source: ByteSource,
    private readonly extents: Extent[],
    private readonly state: VmdkState,
    readonly backing: BackingRef | undefined,
  ) {
    this.starts = extents.map((e) => e.start);
    const last = extents[extents.length - 1]!;
    this.size = last.start + last.length;
  }

  private extentAt(offset: number): Extent {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return this.extents[lo]!;
  }

  async getMapping(offset: number, maxLength: number): Promise<Mapping> {
    if (offset >= this.size) return { kind: 'eof', offset, length: 0 };
    const e = this.extentAt(offset);
    const rel = offset - e.start;
    const len = Math.min(maxLength, e.length - rel);
    return e.mapping(rel, len);
  }

  async decode(unit: CompressedUnit, out: Uint8Array): Promise<void> {
    const e = this.extentAt(unit.guestOffset);
    if (!(e instanceof SparseExtent)) throw new Error('vmdk: a flat extent has no compressed grains');
    await e.decode(unit, out);
  }

  /**
   * qemu's vmdk_is_cid_valid: reading through to the parent needs the
   * parent to be a VMDK whose CID is this image's parentCID; a parent
   * written to since the child was made has a new CID, and its data may
   * no longer be what the child was made over.
   */
  checkBacking(lower: Layer): void {
    if (this.parentChecked) return;
    const cid = lower.format === 'vmdk' ? lower.facts().formatSpecific?.data['cid'] : undefined;
    if (cid !== this.state.parentCid) {
      const hex = (n: number) => n.toString(16).padStart(8, '0');
      throw new ImageFormatError(
        this.source.name,
        'VMDK descriptor',
        this.state.descOffset,
        `parentCID ${hex(this.state.parentCid)} is not the CID of the parent '${lower.source.name}'` +
          (typeof cid === 'number' ? ` (${hex(cid)}): the parent changed after this image was made` : ', which is not a VMDK'),
      );
    }
    this.parentChecked = true;
  }

  facts(): LayerFacts {
    const first = this.extents[0]!;
    // Extents are alike when all are flat, or all sparse with one grain size and compression.
    const alike = this.extents.every((e) =>
      e instanceof FlatExtent
        ? first instanceof FlatExtent
        : first instanceof SparseExtent && e.flags.compressed === first.flags.compressed && e.grainBytes === first.grainBytes,
    );
    const data: { [key: string]: InfoValue } = {
      'create-type': this.state.createType,
      cid: this.state.cid,
      'parent-cid': this.state.parentCid,
      extents: this.extents.map((e) => e.info()),
    };
    // With unlike extents qemu's get_info fails, and info prints neither a cluster size nor a dirty flag.
    return {
      clusterSize: alike && first instanceof SparseExtent ? first.grainBytes : undefined,
      dirty: alike ? false : undefined,
      formatSpecific: { type: 'vmdk', data },
    };
  }

  snapshots() {
    return [];
  }

  atSnapshot(): Promise<Layer> {
    return noSnapshot(this.source);
  }
}

async function open(source: ByteSource, ctx: OpenContext): Promise<Layer> {
  if (source.size < 4) throw new ImageFormatError(source.name, 'VMDK header', 0, 'File is too small, not a valid image');
  const head = await source.read(0, Math.min(source.size, L.SECTOR));
  const magic = viewOf(head).getUint32(0);
  const o = new Opening(source, ctx);
  let descOffset: number;
  if (magic === L.MAGIC_KDMV || magic === L.MAGIC_COWD) {
    await o.sparseFile(source, head);
    descOffset = L.EMBEDDED_DESC_OFFSET;
  } else {
    await o.descriptor(source, await readText(source, 0, L.MAX_DESCRIPTOR_BYTES));
    descOffset = 0;
  }
  if (o.extents.length === 0) throw new ImageFormatError(source.name, 'VMDK descriptor', undefined, 'no usable extent');

  // qemu reads the parent's name and both CIDs from the first 20 sectors at the descriptor offset.
  const scanText = await readText(source, descOffset, L.DESC_SCAN_BYTES);
  const fail = (detail: string) => new ImageFormatError(source.name, 'VMDK descriptor', descOffset, detail);
  let parent: string | undefined;
  try {
    parent = parentHint(scanText);
  } catch (e) {
    if (e instanceof DescriptorError) throw fail(`parentFileNameHint: ${e.detail}`);
    throw e;
  }
  // qemu's buffer for the CID search ends one byte early.
  const cidText = scanText.slice(0, L.DESC_SCAN_BYTES - 1);
  const cid = readCid(cidText, 'CID');
  const parentCid = readCid(cidText, 'parentCID');
  if (cid === undefined) throw fail('no CID');
  if (parentCid === undefined) throw fail('no parentCID');
  const state = { createType: o.createType ?? '', cid, parentCid, descOffset };
  // qemu names the parent's format: a parent that is not VMDK does not open.
  const backing = parent ? { name: parent, format: 'vmdk' } : undefined;
  return new VmdkLayer(source, o.extents, state, backing);
}

/** vmdk_probe: the KDMV or COWD magic, or a text whose first line that is not a comment or blank is `version=1`, `2` or `3`. */
function probe(head: Uint8Array): number {
  if (head.length < 4) return 0;
  const magic = viewOf(head).getUint32(0);
  if (magic === L.MAGIC_KDMV || magic === L.MAGIC_COWD) return 100;
  const at = (i: number) => head[i];
  const NL = 0x0a;
  const CR = 0x0d;
  let p = 0;
  while (p < head.length) {
    if (at(p) === 0x23) {
      while (p < head.length && at(p) !== NL) p++;
      p++;
      continue;
    }
    if (at(p) === 0x20) {
      while (p < head.length && at(p) === 0x20) p++;
      if (p < head.length && at(p) === CR) p++;
      if (p === head.length || at(p) !== NL) return 0;
      p++;
      continue;
    }
    const rest = head.length - p;
    const startsWith = (s: string) => s.length <= rest && [...s].every((c, i) => at(p + i) === c.charCodeAt(0));
    for (const v of ['1', '2', '3']) {
      if (startsWith(`version=${v}\n`) || startsWith(`version=${v}\r\n`)) return 100;
    }
    return 0;
  }
  return 0;
}

export const vmdkDriver: FormatDriver = { name: 'vmdk', probe, open };
