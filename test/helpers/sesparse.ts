// seSparse VMDK extents built byte by byte, for the tests that need one (qemu-img
// cannot create them): the const header, the volatile header at sector 1, a
// one-sector grain directory at sector 8, 64-sector grain tables from sector
// 16 (one for each table a grain falls in, in table order) and the 4 KiB
// grains after them, in the order given.

const SECTOR = 512;
/** Grains per grain table, and sectors per table. */
const TABLE_GRAINS = 4096;
const TABLE_SECTORS = 64;

export interface SeSparseGrain {
  /** The grain's number in the disk (4 KiB each). */
  index: number;
  bytes: Uint8Array;
}

export interface SeSparseExtent {
  file: Uint8Array;
  /** Sector where the grains begin (the end of the metadata). */
  grainsAt: number;
  /** Byte offset of the grain table entry for grain `index` (whose table must be allocated). */
  entryAt(index: number): number;
}

/** Writes a 64-bit little-endian value given as its high and low 32-bit halves. */
export function le64Parts(b: Uint8Array, at: number, hi: number, lo: number): void {
  const view = new DataView(b.buffer, b.byteOffset);
  view.setUint32(at, lo >>> 0, true);
  view.setUint32(at + 4, hi >>> 0, true);
}

export function seSparseExtent(capacitySectors: number, grains: SeSparseGrain[]): SeSparseExtent {
  const tables = [...new Set(grains.map((g) => Math.floor(g.index / TABLE_GRAINS)))].sort((a, b) => a - b);
  const grainsAt = 16 + tables.length * TABLE_SECTORS;
  const file = new Uint8Array((grainsAt + grains.length * 8) * SECTOR);
  const le64 = (at: number, v: number) => le64Parts(file, at, Math.floor(v / 2 ** 32), v % 2 ** 32);
  le64Parts(file, 0, 0, 0xcafebabe);
  le64Parts(file, 8, 2, 1); // version 2.1
  le64(16, capacitySectors);
  le64(24, 8); // grain size, sectors
  le64(32, TABLE_SECTORS);
  le64(80, 1); // volatile header offset, sectors
  le64(88, 1); // and size
  le64(128, 8); // grain directory offset
  le64(136, 1); // and size
  le64(144, 16); // grain tables offset
  le64(152, tables.length * TABLE_SECTORS); // and size
  le64(192, grainsAt);
  le64Parts(file, SECTOR, 0, 0xcafecafe);
  // Directory entries: 0x1 in the top nibble, the table's place among the allocated ones below.
  tables.forEach((t, slot) => le64Parts(file, 8 * SECTOR + t * 8, 0x1000_0000, slot));
  const entryAt = (index: number) => (16 + tables.indexOf(Math.floor(index / TABLE_GRAINS)) * TABLE_SECTORS) * SECTOR + (index % TABLE_GRAINS) * 8;
  grains.forEach((g, i) => {
    // Allocated grain number i: 0x3 in the top nibble, its low 12 bits at bits 48..59, the rest at bits 0..47.
    le64Parts(file, entryAt(g.index), 0x3000_0000 | ((i & 0xfff) << 16), Math.floor(i / 4096));
    file.set(g.bytes, (grainsAt + i * 8) * SECTOR);
  });
  return { file, grainsAt, entryAt };
}
