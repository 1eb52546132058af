/**
 * VHDX `check`, read-only, with qemu-img 7.2's findings (its
 * vhdx_check_bat_entries): every BAT entry in the "fully present" state (2.5.1)
 * must not overflow, must start inside the file and end inside it (a last
 * block only as far as the disk goes), and must not lie over a region qemu
 * knows (the log and every region table entry). qemu reports each finding
 * with error_report, so each line carries the program's name, and counts it
 * as a corruption. Its quirks are kept: sector bitmap entries in that state
 * (it is the same value, 6) are tested like payload blocks, and every
 * (chunk ratio + 1)-th such entry skips the region test.
 *
 * A log that needs replaying never gets here: qemu cannot open such a file
 * read-only, and neither does the driver when opening it for a check.
 */
import type { CheckResult } from '../../driver.ts';
import { throwIfAborted } from '../../errors.ts';
import type { Bat } from './bat.ts';
import { offsetAt, stateAt } from './bat.ts';
import type { Region } from './header.ts';
import * as L from './layout.ts';

/** The name qemu's error_report lines start with; vdisk's own. */
const PROGRAM = 'vdisk';
/** Lines kept; past this they are counted, as a flood of them says nothing more. */
const MAX_MESSAGES = 100_000;
const SECTOR = 512;

export interface VhdxCheckInput {
  file: string;
  /** The file's length in bytes. */
  fileSize: number;
  bat: Bat;
  /** The regions qemu registered, in the order it searches them (the last registered first). */
  regions: readonly Region[];
}

/** A region as qemu keeps it: [start, end) on u64 offsets, and as numbers where those are exact. */
interface Span {
  start: bigint;
  end: bigint;
  startN: number;
  endN: number;
}

function span(r: Region): Span {
  const start = BigInt(r.fileOffset);
  const end = BigInt.asUintN(64, start + BigInt(r.length));
  return { start, end, startN: Number(start), endN: Number(end) };
}

/**
 * qemu's vhdx_region_check: the first region that [start, start + length)
 * overlaps, with qemu's u64 arithmetic. Numbers do while everything is below
 * 2^53 (any real file); a crafted offset takes the exact path.
 */
function overlapped(regions: readonly Span[], exact: boolean, start: number, length: number): { end: bigint; region: Span } | undefined {
  if (exact && start + length <= Number.MAX_SAFE_INTEGER) {
    const region = regions.find((r) => start < r.endN && start + length > r.startN);
    return region && { end: BigInt(start + length), region };
  }
  const s = BigInt(start);
  const end = BigInt.asUintN(64, s + BigInt(length));
  const region = regions.find((r) => !(s >= r.end || end <= r.start));
  return region && { end, region };
}

/** qemu-img check of a VHDX file; never writes. */
export async function checkVhdx(input: VhdxCheckInput, signal?: AbortSignal): Promise<CheckResult> {
  const { bat, regions } = input;
  const g = bat.g;
  // qemu sees the file's length in whole sectors (bdrv_getlength).
  const fileSize = Math.ceil(input.fileSize / SECTOR) * SECTOR;
  const messages: string[] = [];
  let dropped = 0;
  let corruptions = 0;
  const error = (line: string) => {
    corruptions++;
    if (messages.length < MAX_MESSAGES) messages.push(`${PROGRAM}: ${line}`);
    else dropped++;
  };
  const spans = regions.map(span);
  const exact = spans.every((r) => r.end <= BigInt(Number.MAX_SAFE_INTEGER));
  // qemu's offset > INT64_MAX - block_size; exact as numbers, both sides being multiples of 1 MiB.
  const overflowFrom = 2 ** 63 - g.blockSize;
  let payblocks = g.chunkRatio;
  for (let index = 0; index < g.entries; ) {
    throwIfAborted(signal, input.file);
    const { page, first } = await bat.pageOf(index);
    const end = Math.min(g.entries, first + page.byteLength / L.BAT_ENTRY_SIZE);
    for (; index < end; index++) {
      if (stateAt(page, index - first) !== L.PAYLOAD_BLOCK_FULLY_PRESENT) continue;
      // A multiple of 1 MiB below 2^64: exact as a number, printed exactly through a bigint.
      const offset = offsetAt(page, index - first);
      const behind = g.size - index * g.blockSize;
      // qemu's unsigned subtraction wraps past the end of the disk, and then the whole block counts.
      const length = behind < 0 ? g.blockSize : Math.min(g.blockSize, behind);
      if (offset >= overflowFrom) error(`VHDX BAT entry ${index} offset overflow.`);
      if (offset >= fileSize) {
        error(`VHDX BAT entry ${index} start offset ${BigInt(offset)} points after end of file (${fileSize}). Image has probably been truncated.`);
      } else if (offset + length > fileSize) {
        error(`VHDX BAT entry ${index} end offset ${offset + length - 1} points after end of file (${fileSize}). Image has probably been truncated.`);
      }
      if (payblocks > 0) {
        payblocks--;
        const hit = overlapped(spans, exact, offset, g.blockSize);
        if (hit) error(`VHDX region ${BigInt(offset)}-${hit.end} overlaps with region ${hit.region.start}-${hit.region.end}`);
      } else {
        payblocks = g.chunkRatio;
      }
    }
  }
  if (dropped) messages.push(`(${dropped} more messages not shown)`);
  return { checkErrors: 0, corruptions, leaks: 0, messages };
}
