/**
 * VDI `check`, read-only, with qemu-img 7.2's findings (its vdi_co_check):
 * every allocated entry of the block map must name a data block inside the
 * map's range and no data block may be named twice; the count of allocated
 * entries must equal the header's. Each finding is a corruption and an
 * "ERROR: ..." line, worded as qemu prints it (including its way of naming
 * both blocks of a duplicate by the data block's number).
 *
 * Memory: one bit per entry of the block map, which lies inside the file.
 */
import type { CheckResult } from '../../driver.ts';
import { throwIfAborted } from '../../errors.ts';
import type { BlockTable } from '../block-table.ts';
import type { VdiHeader } from './header.ts';
import * as L from './layout.ts';

/** Entries walked between looks at the abort signal. */
const STRIDE = 1 << 20;
/** Lines kept; past this they are counted, as a flood of them says nothing more. */
const MAX_MESSAGES = 100_000;

/** qemu-img check of a VDI file; never writes. */
export async function checkVdi(table: BlockTable, h: VdiHeader, file: string, signal?: AbortSignal): Promise<CheckResult> {
  const messages: string[] = [];
  let dropped = 0;
  let corruptions = 0;
  const error = (line: () => string) => {
    corruptions++;
    if (messages.length < MAX_MESSAGES) messages.push(line());
    else dropped++;
  };
  const used = new Uint8Array(Math.ceil(h.blocksInImage / 8));
  let allocated = 0;
  for (let first = 0; first < h.blocksInImage; first += STRIDE) {
    throwIfAborted(signal, file);
    await table.walk(first, first + STRIDE, (block, entry) => {
      // Free (never written) and zero (VirtualBox's discarded) blocks hold no data.
      if (entry >= L.BLOCK_ZERO) return true;
      if (entry >= h.blocksInImage) {
        error(() => `ERROR: block index ${block} too large, is ${entry}`);
        return true;
      }
      allocated++;
      const bit = 1 << (entry & 7);
      if (used[entry >>> 3]! & bit) error(() => `ERROR: block index ${entry} also used by ${entry}`);
      used[entry >>> 3]! |= bit;
      return true;
    });
  }
  if (dropped) messages.push(`(${dropped} more messages not shown)`);
  if (allocated !== h.blocksAllocated) {
    corruptions++;
    messages.push(`ERROR: allocated blocks mismatch, is ${allocated}, should be ${h.blocksAllocated}`);
  }
  return { checkErrors: 0, corruptions, leaks: 0, messages };
}
