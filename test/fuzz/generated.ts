/**
 * Images for the fuzz suite that no conformance fixture has, made small and on
 * purpose: a seSparse and a COWD (vmfsSparse) VMDK extent behind their
 * descriptors, and a VHDX whose log must be replayed. Each comes with the
 * file to mutate, the name to open, and the byte ranges its metadata takes,
 * where a share of the mutations is aimed.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c } from '../../engine/codecs/crc32c.ts';
import { qemuImg, run } from '../helpers/run.ts';
import { seSparseExtent } from '../helpers/sesparse.ts';

export interface GeneratedCase {
  /** The format the engine reads the opened image as. */
  format: string;
  fixture: string;
  /** The file the mutations are made to. */
  path: string;
  /** The file opened; it is `path` or refers to it. */
  image: string;
  /** Metadata ranges [start, end) of `path`. */
  focus: [number, number][];
}

const SECTOR = 512;
const KiB = 1024;
const MiB = 1024 * KiB;

const le32 = (b: Uint8Array, at: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(at, v >>> 0, true);
const le64 = (b: Uint8Array, at: number, v: number | bigint) => new DataView(b.buffer, b.byteOffset).setBigUint64(at, BigInt(v), true);
const getLe32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint32(at, true);
const getLe64 = (b: Uint8Array, at: number) => Number(new DataView(b.buffer, b.byteOffset).getBigUint64(at, true));
const ascii = (b: Uint8Array, at: number, text: string) => b.set(new TextEncoder().encode(text), at);
const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 17 + (i >> 9)) & 0xff);

const descriptor = (createType: string, extent: string) =>
  `# Disk DescriptorFile\nversion=1\nCID=2bd7a5c1\nparentCID=ffffffff\ncreateType="${createType}"\n\n# Extent description\n${extent}\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = "ide"\n`;

/** A seSparse extent of 32 MiB: grain directory at sector 8, two grain tables, a few 4 KiB grains. */
function seSparse(dir: string): GeneratedCase[] {
  const capacity = (32 * MiB) / SECTOR;
  const { file, grainsAt } = seSparseExtent(
    capacity,
    [0, 1, 7, 4095, 4096 + 9].map((g) => ({ index: g, bytes: pattern(4096, g) })),
  );
  writeFileSync(join(dir, 'se-sparse.vmdk'), file);
  writeFileSync(join(dir, 'se.vmdk'), descriptor('seSparse', `RW ${capacity} SESPARSE "se-sparse.vmdk"`));
  const focus: [number, number][] = [[0, grainsAt * SECTOR]];
  return [
    { format: 'vmdk', fixture: 'gen-sesparse-extent', path: join(dir, 'se-sparse.vmdk'), image: join(dir, 'se.vmdk'), focus },
    { format: 'vmdk', fixture: 'gen-sesparse-descriptor', path: join(dir, 'se.vmdk'), image: join(dir, 'se.vmdk'), focus: [[0, 512]] },
  ];
}

/** A COWD extent of 4 MiB: one grain directory entry, one grain table, four grains. */
function cowd(dir: string): GeneratedCase[] {
  const capacity = 8192;
  const grainSectors = 8;
  const gtSectors = (4096 * 4) / SECTOR;
  const firstGrain = 8 + gtSectors;
  const grains = [0, 3, 200, 1023];
  const file = new Uint8Array((firstGrain + grains.length * grainSectors) * SECTOR);
  ascii(file, 0, 'COWD');
  le32(file, 4, 1);
  le32(file, 8, 3);
  le32(file, 12, capacity);
  le32(file, 16, grainSectors);
  le32(file, 20, 4);
  le32(file, 24, 1);
  le32(file, 4 * SECTOR, 8);
  grains.forEach((g, i) => {
    const at = firstGrain + i * grainSectors;
    le32(file, 8 * SECTOR + g * 4, at);
    file.set(pattern(grainSectors * SECTOR, g + 5), at * SECTOR);
  });
  writeFileSync(join(dir, 'cowd-delta.vmdk'), file);
  writeFileSync(join(dir, 'cowd.vmdk'), descriptor('vmfsSparse', `RW ${capacity} VMFSSPARSE "cowd-delta.vmdk"`));
  return [{ format: 'vmdk', fixture: 'gen-cowd-extent', path: join(dir, 'cowd-delta.vmdk'), image: join(dir, 'cowd.vmdk'), focus: [[0, firstGrain * SECTOR]] }];
}

/** Sets the CRC-32C at `at` of `b` (computed with the field zero), as every VHDX checksum is. */
function setChecksum(b: Uint8Array, at: number): void {
  le32(b, at, 0);
  le32(b, at, crc32c(b));
}

/**
 * A VHDX made by qemu-img with one log entry to replay: a data descriptor
 * that rewrites a sector of block 0, and a zero descriptor over part of
 * block 2; the current header names the log.
 */
function vhdxWithLog(dir: string): GeneratedCase[] {
  const name = join(dir, 'log.vhdx');
  if (qemuImg(['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', name, '8M']).status !== 0) throw new Error('qemu-img create vhdx failed');
  const io = run('qemu-io', ['-f', 'vhdx', '-c', 'write -P 0xa0 0 1M', '-c', 'write -P 0xa2 2M 1M', name]);
  if (io.status !== 0) throw new Error(`qemu-io failed: ${io.stderr}`);
  const f = new Uint8Array(readFileSync(name));
  const current = getLe64(f, 64 * KiB + 8) > getLe64(f, 128 * KiB + 8) ? 64 * KiB : 128 * KiB;
  const logLength = getLe32(f, current + 68);
  const logOffset = getLe64(f, current + 72);
  const bat = getLe64(f, 192 * KiB + 16 + 16);
  const blockAt = (b: number) => Number(BigInt(getLe64(f, bat + 8 * b)) >> 20n) * MiB;
  const guid = Uint8Array.from({ length: 16 }, (_, i) => 0x31 + i);

  const entry = new Uint8Array(2 * 4 * KiB);
  const sequence = 12;
  ascii(entry, 0, 'loge');
  le32(entry, 8, entry.length);
  le32(entry, 12, 0);
  le64(entry, 16, sequence);
  le32(entry, 24, 2);
  entry.set(guid, 32);
  le64(entry, 48, f.length);
  le64(entry, 56, f.length);
  const sector = pattern(4 * KiB, 99);
  const target = blockAt(0) + 8 * KiB;
  ascii(entry, 64, 'desc');
  entry.set(sector.subarray(4092, 4096), 64 + 4);
  entry.set(sector.subarray(0, 8), 64 + 8);
  le64(entry, 64 + 16, target);
  le64(entry, 64 + 24, sequence);
  ascii(entry, 96, 'zero');
  le64(entry, 96 + 8, 64 * KiB);
  le64(entry, 96 + 16, blockAt(2) + 128 * KiB);
  le64(entry, 96 + 24, sequence);
  const data = 4 * KiB;
  ascii(entry, data, 'data');
  le32(entry, data + 4, 0);
  entry.set(sector.subarray(8, 4092), data + 8);
  le32(entry, data + 4092, sequence);
  setChecksum(entry, 4);
  f.set(entry, logOffset);
  const header = f.subarray(current, current + 4 * KiB);
  header.set(guid, 48);
  setChecksum(header, 4);
  writeFileSync(name, f);
  return [
    {
      format: 'vhdx',
      fixture: 'gen-vhdx-log',
      path: name,
      image: name,
      focus: [
        [current, current + 4 * KiB],
        [logOffset, logOffset + Math.min(logLength, entry.length + 4 * KiB)],
        [bat, bat + 4 * KiB],
      ],
    },
  ];
}

/** Makes every generated image in `dir`. */
export function generatedCases(dir: string): GeneratedCase[] {
  return [...seSparse(dir), ...cowd(dir), ...vhdxWithLog(dir)];
}
