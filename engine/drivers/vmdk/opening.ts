/**
 * Finding the extents an image is made of, in disk order, as qemu's
 * vmdk_open does: a sparse file is one extent (or, with no capacity, a
 * carrier for a descriptor); a descriptor lists extents, each opened through
 * the opener gate, and a sparse extent may itself carry a descriptor. Loops
 * of such files are refused, and errors in an extent file name that file.
 */
import { ImageFormatError, UnsupportedFeatureError } from '../../errors.ts';
import { LruCache } from '../../cache.ts';
import { normalizePath } from '../../io/opener.ts';
import type { ByteSource } from '../../io/source.ts';
import type { OpenContext } from '../../driver.ts';
import { viewOf } from '../common.ts';
import { cString, DescriptorError, parseExtentLines, quotedValue } from './descriptor.ts';
import { FlatExtent, hostedEntries, SparseExtent, type Extent, type TableCache } from './extents.ts';
import { cowdGeometry, parseCowdHeader, parseFooter, parseSparseHeader, sparseGeometry } from './header.ts';
import * as L from './layout.ts';
import { checkVolatileHeader, parseConstHeader, seSparseEntries, seSparseGeometry } from './sesparse.ts';

/** Budget for grain tables and grain directory pages of one image (a grain table is at most 2 KiB). */
const TABLE_CACHE_BYTES = 8 * 1024 * 1024;
/** Embedded descriptors can name sparse files with descriptors of their own; deeper than this is a loop. */
const MAX_NESTING = 8;
/** More extents than this is no disk qemu or VMware makes (2 GiB each, this is 128 TiB). */
const MAX_EXTENTS = 65536;

/** Opening one image: the extents found so far, in disk order, and the files being opened as descriptors. */
export class Opening {
  readonly extents: Extent[] = [];
  readonly cache: TableCache = new LruCache(TABLE_CACHE_BYTES, (v) => v.byteLength);
  createType: string | undefined;
  private readonly nesting: string[] = [];

  constructor(
    readonly top: ByteSource,
    private readonly ctx: OpenContext,
  ) {}

  get end(): number {
    const last = this.extents[this.extents.length - 1];
    return last ? last.start + last.length : 0;
  }

  fail(file: string, structure: string, offset: number | undefined, detail: string): ImageFormatError {
    return new ImageFormatError(file, structure, offset, detail);
  }

  private add(e: Extent): void {
    if (this.extents.length >= MAX_EXTENTS) throw this.fail(this.top.name, 'VMDK descriptor', undefined, `more than ${MAX_EXTENTS} extents`);
    if (e.start + e.length > Number.MAX_SAFE_INTEGER) throw this.fail(e.source.name, 'VMDK descriptor', undefined, 'the extents add up to an impossible disk size');
    this.extents.push(e);
  }

  /** vmdk_open_sparse: a file that starts with KDMV or COWD. */
  async sparseFile(src: ByteSource, head: Uint8Array): Promise<void> {
    const magic = viewOf(head).getUint32(0);
    if (magic === L.MAGIC_COWD) {
      const g = cowdGeometry(parseCowdHeader(head, src.name), src.name);
      this.add(new SparseExtent(src, this.end, g, hostedEntries(false), { compressed: false, markers: false }, this.cache, this.extents.length, ''));
      return;
    }
    let h = parseSparseHeader(head, src.name);
    if (h.capacity === 0 && h.descriptorOffset !== 0) {
      // A sparse file that only carries a descriptor: its extents are elsewhere.
      const text = await readText(src, h.descriptorOffset * L.SECTOR, L.MAX_DESCRIPTOR_BYTES);
      await this.nested(src, () => this.descriptor(src, text));
      return;
    }
    this.createType ??= 'monolithicSparse';
    let at = 0;
    if (h.gdAtEnd) {
      // The footer's copy of the header has the real grain directory offset.
      const fileEnd = Math.ceil(src.size / L.SECTOR) * L.SECTOR;
      at = fileEnd - L.FOOTER_BYTES;
      if (at < 0) throw this.fail(src.name, 'VMDK footer', undefined, 'Failed to read footer: the file is too short');
      h = parseFooter(await src.read(at, L.FOOTER_BYTES), src.name, at);
      at += L.SECTOR;
    }
    const g = sparseGeometry(h, src.size, src.name, at);
    const compressed = h.compressAlgorithm === L.COMPRESSION_DEFLATE;
    if (compressed) this.createType = 'streamOptimized';
    const flags = { compressed, markers: (h.flags & L.FLAG_MARKERS) !== 0 };
    if (compressed && this.extents.some((e) => e instanceof SparseExtent && e.flags.compressed)) {
      // Decoded grains are cached by layer and host offset, which two compressed extent files would share.
      throw new UnsupportedFeatureError(this.top.name, 'more than one stream-optimized extent in one VMDK');
    }
    const codec = hostedEntries((h.flags & L.FLAG_ZEROED_GRAIN) !== 0);
    this.add(new SparseExtent(src, this.end, g, codec, flags, this.cache, this.extents.length, ''));
  }

  /** vmdk_open_se_sparse: the constant header, the volatile header, then the tables as any sparse extent's. */
  private async seSparse(src: ByteSource): Promise<void> {
    const h = parseConstHeader(await src.read(0, L.SECTOR), src.name);
    const at = h.volatileHeaderOffset * L.SECTOR;
    if (at >= src.size) throw this.fail(src.name, 'seSparse volatile header', at, 'lies past the end of the file');
    checkVolatileHeader(await src.read(at, L.SECTOR), src.name, at);
    const g = seSparseGeometry(h, src.name);
    this.add(new SparseExtent(src, this.end, g, seSparseEntries(h), { compressed: false, markers: false }, this.cache, this.extents.length, ''));
  }

  /** vmdk_open_desc_file: the create type, then the extent lines in order. */
  async descriptor(desc: ByteSource, text: string): Promise<void> {
    const fail = (detail: string) => this.fail(desc.name, 'VMDK descriptor', undefined, detail);
    const ct = quotedValue(text, 'createType', 128);
    if (ct === undefined) throw fail('invalid VMDK image descriptor');
    if (!L.DESCRIPTOR_CREATE_TYPES.includes(ct)) throw new UnsupportedFeatureError(desc.name, `VMDK image type '${ct}'`);
    this.createType = ct;
    let lines;
    try {
      lines = parseExtentLines(text);
    } catch (e) {
      if (e instanceof DescriptorError) throw fail(e.detail);
      throw e;
    }
    for (const line of lines) {
      // Names are relative to the folder of the image that was opened, even in a nested descriptor, as in qemu.
      const full = normalizePath(this.ctx.opener.resolve(line.name, this.top));
      if (full === normalizePath(desc.name) || this.nesting.includes(full)) {
        throw fail(`extent '${line.name}' is the descriptor itself`);
      }
      const src = await this.ctx.opener.open(line.name, this.top, 'extent');
      if (line.type === 'FLAT' || line.type === 'VMFS') {
        this.add(new FlatExtent(src, this.end, line.sectors * L.SECTOR, line.flatOffset * L.SECTOR, line.type));
        continue;
      }
      await this.named(src, () => (line.type === 'SESPARSE' ? this.seSparse(src) : this.sparseExtent(desc, src)));
      // qemu labels the last extent with the line's type, whatever the file added.
      const last = this.extents[this.extents.length - 1];
      if (last) last.type = line.type;
    }
  }

  /** A SPARSE or VMFSSPARSE extent: a file that starts with KDMV or COWD. */
  private async sparseExtent(desc: ByteSource, src: ByteSource): Promise<void> {
    if (src.size < 4) throw this.fail(src.name, 'VMDK sparse header', 0, 'File is too small, not a valid image');
    const head = await src.read(0, Math.min(src.size, L.SECTOR));
    const magic = viewOf(head).getUint32(0);
    if (magic !== L.MAGIC_KDMV && magic !== L.MAGIC_COWD) throw this.fail(src.name, 'VMDK sparse header', 0, 'Image not in VMDK format');
    await this.nested(desc, () => this.sparseFile(src, head));
  }

  /**
   * Runs a step that reads an extent file, naming that file in what goes
   * wrong: opening errors are reported under the image's name, and the
   * extent at fault must still be identifiable.
   */
  private async named(src: ByteSource, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (e) {
      if (e instanceof ImageFormatError && e.file === src.name && !e.structure.includes(`'${src.name}'`)) {
        throw new ImageFormatError(src.name, `${e.structure} of '${src.name}'`, e.offset, e.detail);
      }
      if (e instanceof UnsupportedFeatureError && e.file === src.name && !e.feature.includes(`'${src.name}'`)) {
        throw new UnsupportedFeatureError(src.name, `${e.feature} in '${src.name}'`);
      }
      throw e;
    }
  }

  private async nested(file: ByteSource, step: () => Promise<void>): Promise<void> {
    if (this.nesting.length >= MAX_NESTING) throw this.fail(file.name, 'VMDK descriptor', undefined, 'descriptors nested too deeply (a loop of extent files?)');
    this.nesting.push(normalizePath(file.name));
    try {
      await step();
    } finally {
      this.nesting.pop();
    }
  }
}

/** Bytes at `offset` as a C string, at most `max` of them (past the end of the file they read as zeros, as in qemu). */
export async function readText(src: ByteSource, offset: number, max: number): Promise<string> {
  if (offset >= src.size) return '';
  return cString(await src.read(offset, Math.min(max, src.size - offset)));
}
