// VDI beyond the conformance fixtures: the header parser on its own, and
// images qemu-img cannot make, built here from the VirtualBox layout (a block
// map out of order, shared and zero blocks, a data area aligned the way
// VirtualBox aligns it, an entry beyond the declared block count), a file too
// short to be a VDI, a large sparse image, and -f vdi on a file that is not
// one. Wherever qemu-img reads an image, the expected answer is qemu-img's.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { join } from 'node:path';
import { qemuImg, run, vdisk } from '../helpers/run.ts';
import { ok, scratchDir } from '../helpers/scratch.ts';
import { parseHeader } from '../../engine/drivers/vdi/header.ts';
import { vdiDriver } from '../../engine/drivers/vdi/driver.ts';
import * as L from '../../engine/drivers/vdi/layout.ts';
import { MemorySource } from '../../engine/io/source.ts';
import { ImageFormatError, UnsupportedFeatureError, VDiskError } from '../../engine/errors.ts';
import type { Opener } from '../../engine/io/opener.ts';

const MiB = 1024 * 1024;
const scratch = scratchDir('vdi');
const { read, write, sameAsQemu, allSameAsQemu } = scratch;

// ---------------------------------------------------------------------------
// VDI structures, written from the layout (engine/drivers/vdi/layout.ts)

interface HeaderFields {
  text?: string;
  version?: number;
  imageType?: number;
  offsetBmap?: number;
  offsetData?: number;
  sectorSize?: number;
  diskSize?: bigint;
  blockSize?: number;
  blocksInImage?: number;
  blocksAllocated?: number;
  parentUuid?: boolean;
  linkUuid?: boolean;
}

function header(f: HeaderFields = {}): Uint8Array {
  const b = new Uint8Array(L.HEADER_BYTES);
  const v = new DataView(b.buffer);
  const text = f.text ?? '<<< Oracle VM VirtualBox Disk Image >>>\n';
  for (let i = 0; i < text.length; i++) b[L.H.text + i] = text.charCodeAt(i);
  v.setUint32(L.H.signature, L.SIGNATURE, true);
  v.setUint32(L.H.version, f.version ?? L.VERSION_1_1, true);
  v.setUint32(L.H.headerSize, 0x190, true);
  v.setUint32(L.H.imageType, f.imageType ?? L.TYPE_DYNAMIC, true);
  v.setUint32(L.H.offsetBmap, f.offsetBmap ?? 0x200, true);
  v.setUint32(L.H.offsetData, f.offsetData ?? MiB, true);
  v.setUint32(L.H.sectorSize, f.sectorSize ?? 512, true);
  const blocks = f.blocksInImage ?? 8;
  v.setBigUint64(L.H.diskSize, f.diskSize ?? BigInt(blocks * MiB), true);
  v.setUint32(L.H.blockSize, f.blockSize ?? MiB, true);
  v.setUint32(L.H.blocksInImage, blocks, true);
  v.setUint32(L.H.blocksAllocated, f.blocksAllocated ?? 0, true);
  for (let i = 0; i < 16; i++) b[L.H.uuidImage + i] = 0x40 + i;
  if (f.linkUuid) b[L.H.uuidLink + 3] = 1;
  if (f.parentUuid) b[L.H.uuidParent + 15] = 1;
  return b;
}

/** A whole image: header, block map at 0x200, data blocks from offsetData, each filled by `fill(dataBlock)`. */
function image(f: HeaderFields, map: number[], dataBlocks: number, fill: (block: number, out: Uint8Array) => void): Uint8Array {
  const offsetData = f.offsetData ?? MiB;
  const out = new Uint8Array(offsetData + dataBlocks * MiB);
  out.set(header({ ...f, blocksInImage: f.blocksInImage ?? map.length }));
  const v = new DataView(out.buffer);
  map.forEach((e, i) => v.setUint32((f.offsetBmap ?? 0x200) + i * 4, e, true));
  for (let d = 0; d < dataBlocks; d++) fill(d, out.subarray(offsetData + d * MiB, offsetData + (d + 1) * MiB));
  return out;
}

const text = Buffer.from(Array.from({ length: 30000 }, (_, i) => `2024-03-01 host vboxsvc[${i}]: block ${i % 97} flushed\n`).join(''));

/** Data block d: a byte pattern, with a stretch of text and a zero run so no block is uniform. */
function fillBlock(d: number, out: Uint8Array): void {
  out.fill(0x70 + d);
  out.set(text.subarray(d * 1000, d * 1000 + 200 * 1024), 256 * 1024);
  out.fill(0, 700 * 1024, 764 * 1024);
}

const noOpener: Opener = {
  resolve: (name) => name,
  open: () => Promise.reject(new Error('no other files')),
};

// ---------------------------------------------------------------------------

describe('the header parser', () => {
  const fails = (f: HeaderFields, kind: typeof ImageFormatError | typeof UnsupportedFeatureError, detail: RegExp, offset?: number) => {
    let err: unknown;
    try {
      parseHeader(header(f), 'x.vdi');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(kind);
    expect((err as Error).message).toMatch(detail);
    if (offset !== undefined) expect((err as ImageFormatError).offset).toBe(offset);
  };

  it('reads the fields of a sound header', () => {
    const h = parseHeader(header({ imageType: L.TYPE_STATIC, blocksInImage: 5, blocksAllocated: 3 }), 'x.vdi');
    expect(h).toEqual({ imageType: 2, offsetBmap: 0x200, offsetData: MiB, diskSize: 5 * MiB, blockSize: MiB, blocksInImage: 5, blocksAllocated: 3 });
  });

  it('rounds a disk size that is not whole sectors up, as qemu does', () => {
    expect(parseHeader(header({ diskSize: BigInt(3 * MiB + 1), blocksInImage: 4 }), 'x.vdi').diskSize).toBe(3 * MiB + 512);
  });

  it("refuses what qemu refuses, naming the field's offset", () => {
    fails({ diskSize: 2n ** 63n }, ImageFormatError, /Unsupported VDI image size/, L.H.diskSize);
    fails({ offsetBmap: 0x201 }, ImageFormatError, /unaligned block map offset 0x201/, L.H.offsetBmap);
    fails({ offsetData: 0x100001 }, ImageFormatError, /unaligned data offset/, L.H.offsetData);
    fails({ sectorSize: 4096 }, ImageFormatError, /sector size 4096 is not 512/, L.H.sectorSize);
    fails({ diskSize: BigInt(8 * MiB + 512) }, ImageFormatError, /image bitmap has room for 8388608/, L.H.diskSize);
    fails({ blocksInImage: L.MAX_BLOCKS + 1, diskSize: 0n }, ImageFormatError, /too many blocks 536870785, max is 536870784/, L.H.blocksInImage);
    fails({ version: 0x00010000 }, UnsupportedFeatureError, /VDI version 1\.0/);
    fails({ blockSize: 2 * MiB }, UnsupportedFeatureError, /block size 2097152/);
    fails({ linkUuid: true }, UnsupportedFeatureError, /link UUID/);
    fails({ parentUuid: true }, UnsupportedFeatureError, /parent UUID/);
  });

  it('refuses a wrong signature', () => {
    const b = header();
    b[L.H.signature] = 0x7e;
    expect(() => parseHeader(b, 'x.vdi')).toThrow(/Image not in VDI format \(bad signature beda107e\)/);
  });

  it('answers any header bytes with a structure or a typed error', () => {
    const base = header();
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0x40, max: 0x1ff }), fc.integer({ min: 0, max: 255 })), { maxLength: 12 }), (pokes) => {
        const b = base.slice();
        for (const [at, value] of pokes) b[at] = value;
        try {
          const h = parseHeader(b, 'x.vdi');
          expect(h.diskSize).toBeLessThanOrEqual(h.blocksInImage * h.blockSize);
          expect(h.blocksInImage).toBeLessThanOrEqual(L.MAX_BLOCKS);
        } catch (e) {
          expect(e).toBeInstanceOf(VDiskError);
        }
      }),
    );
  });
});

describe('opening images from bytes', () => {
  it('refuses a block map entry past the end of the file, naming the entry', async () => {
    const bytes = image({}, [0, 5, L.BLOCK_FREE, L.BLOCK_FREE, L.BLOCK_FREE, L.BLOCK_FREE, L.BLOCK_FREE, L.BLOCK_FREE], 2, fillBlock);
    const err = await vdiDriver.open(new MemorySource('m.vdi', bytes), { opener: noOpener }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageFormatError);
    expect((err as ImageFormatError).offset).toBe(0x200 + 4);
    expect((err as Error).message).toMatch(/block 1 is mapped to data block 5/);
  });

  it('ignores entries past the disk size, as qemu never reads them', async () => {
    const map = [0, L.BLOCK_FREE, 0xdeadbeef, 0xdeadbeef];
    const bytes = image({ diskSize: BigInt(2 * MiB) }, map, 1, fillBlock);
    const layer = await vdiDriver.open(new MemorySource('m.vdi', bytes), { opener: noOpener });
    expect(layer.size).toBe(2 * MiB);
    expect(await layer.getMapping(0, 4 * MiB)).toMatchObject({ kind: 'data', length: MiB, hostOffset: MiB });
    expect(await layer.getMapping(MiB, 4 * MiB)).toMatchObject({ kind: 'zero', length: MiB });
  });

  it('probes by the signature, in a header cut short too', () => {
    const b = header();
    expect(vdiDriver.probe(b, b.length)).toBe(100);
    expect(vdiDriver.probe(b.subarray(0, 68), 68)).toBe(100);
    expect(vdiDriver.probe(b.subarray(0, 67), 67)).toBe(0);
  });
});

describe('images qemu-img cannot make', () => {
  it('reads a VirtualBox-style image with its block map out of order, shared and zero blocks, as qemu-img does', () => {
    // Data area at 1 MiB as VirtualBox aligns it; guest blocks point at data
    // blocks out of order, two share one, one is zero, one free, one beyond
    // the declared block count (still inside the file), two back to back.
    const map = [2, 0, L.BLOCK_ZERO, L.BLOCK_FREE, 1, 0, 5, 6, 11, 3];
    write('vbox.vdi', image({ blocksInImage: 10, blocksAllocated: 8 }, map, 12, fillBlock));
    allSameAsQemu('vbox.vdi');
  });

  it('reads a static image whose data area starts right after the block map', () => {
    write('static.vdi', image({ imageType: L.TYPE_STATIC, offsetData: 0x400, diskSize: BigInt(3 * MiB + 5 * 512) }, [0, 1, 2, 3], 4, fillBlock));
    allSameAsQemu('static.vdi');
  });

  it('treats an image type qemu does not know as dynamic, as qemu does', () => {
    write('undo.vdi', image({ imageType: 3 }, [L.BLOCK_FREE, 0, L.BLOCK_ZERO, 1], 2, fillBlock));
    allSameAsQemu('undo.vdi');
  });

  it('takes a file shorter than a VDI header for one when the signature is there, as qemu-img does', () => {
    // qemu probes and reads the header zero-padded; the block map is then past the end of the file.
    write('short.vdi', header().subarray(0, 500));
    expect(qemuImg(['info', 'short.vdi'], { cwd: scratch.dir }).stdout).toContain('file format: vdi');
    const v = vdisk(['info', 'short.vdi'], { cwd: scratch.dir });
    expect(v.status).toBe(1);
    expect(v.stderr).toMatch(/'short.vdi': VDI block table at offset 512: .* runs past the end of the file \(500 bytes\)/);
    write('tiny.vdi', header().subarray(0, 60));
    sameAsQemu(['info', '--output=json', 'tiny.vdi']);
  });

  it('refuses -f vdi on a file that is not a VDI, as qemu-img does', () => {
    write('plain.raw', new Uint8Array(MiB).fill(0x42));
    const q = qemuImg(['info', '-f', 'vdi', 'plain.raw'], { cwd: scratch.dir });
    const v = vdisk(['info', '-f', 'vdi', 'plain.raw'], { cwd: scratch.dir });
    expect(q.status).toBe(1);
    expect(v.status).toBe(1);
    expect(v.stderr).toContain("'plain.raw'");
    // qemu checks the disk size field before the signature; the reason given is the same.
    const reason = q.stderr.replace(/^qemu-img: Could not open '[^']*': /, '').trim();
    expect(reason).toMatch(/Unsupported VDI image size/);
    expect(v.stderr).toContain(reason);
  });
});

describe('a 1 TiB sparse VDI (4 MiB block map)', () => {
  beforeAll(() => {
    ok('create', qemuImg(['create', '-q', '-f', 'vdi', 'big.vdi', '1T'], { cwd: scratch.dir }));
    ok('qemu-io', run('qemu-io', ['-f', 'vdi', '-c', 'write -P 0x5a 0 64k', '-c', 'write -P 0xa5 512G 2M', '-c', `write -P 0x33 ${1023 * 1024 * MiB + 1020 * MiB} 4M`, 'big.vdi'], { cwd: scratch.dir }));
  });

  it('maps and reports info like qemu-img', () => {
    sameAsQemu(['info', '--output=json', 'big.vdi']);
    sameAsQemu(['map', '--output=json', 'big.vdi']);
  });
});
