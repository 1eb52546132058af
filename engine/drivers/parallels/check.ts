/**
 * Parallels `check`, read-only, with qemu-img 7.2's findings (its
 * parallels_co_check): an image left "in use" (not closed cleanly) and every
 * BAT entry that points past the end of the file are corruptions; the file's
 * space after the last cluster the BAT uses is leaked, counted in clusters;
 * the allocation statistics and the image end offset are qemu's. qemu 7.2 does
 * not look for clusters used twice. It sees the file's length in whole
 * sectors (bdrv_getlength), so that is the length compared with here.
 */
import type { CheckResult } from '../../driver.ts';
import { throwIfAborted } from '../../errors.ts';
import type { ByteSource } from '../../io/source.ts';
import type { BlockTable } from '../block-table.ts';
import type { ParallelsHeader } from './header.ts';
import * as L from './layout.ts';

/** Entries walked between looks at the abort signal. */
const STRIDE = 1 << 20;
/** Lines kept; past this they are counted, as a flood of them says nothing more. */
const MAX_MESSAGES = 100_000;

/** qemu-img check of a Parallels file; never writes. */
export async function checkParallels(source: ByteSource, h: ParallelsHeader, bat: BlockTable, signal?: AbortSignal): Promise<CheckResult> {
  const size = Math.ceil(source.size / L.SECTOR) * L.SECTOR;
  const cs = h.tracks * L.SECTOR;
  /** BAT units per cluster: consecutive clusters' entries differ by this. */
  const step = cs / h.batUnit;
  const messages: string[] = [];
  let dropped = 0;
  let corruptions = 0;
  if (h.inUse) {
    corruptions++;
    messages.push('ERROR image was not closed correctly');
  }
  let allocated = 0;
  let fragmented = 0;
  let high = 0;
  let prev = 0;
  for (let first = 0; first < h.batEntries; first += STRIDE) {
    throwIfAborted(signal, source.name);
    await bat.walk(first, first + STRIDE, (i, entry) => {
      if (entry === 0) {
        prev = 0;
        return true;
      }
      if (entry * h.batUnit > size) {
        corruptions++;
        if (messages.length < MAX_MESSAGES) messages.push(`ERROR cluster ${i} is outside image`);
        else dropped++;
      }
      allocated++;
      high = Math.max(high, entry);
      if (prev !== 0 && prev + step !== entry) fragmented++;
      prev = entry;
      return true;
    });
  }
  if (dropped) messages.push(`(${dropped} more messages not shown)`);
  const imageEndOffset = high * h.batUnit + cs;
  let leaks = 0;
  if (size > imageEndOffset) {
    leaks = Math.ceil((size - imageEndOffset) / cs);
    messages.push(`ERROR space leaked at the end of the image ${size - imageEndOffset}`);
  }
  return {
    checkErrors: 0,
    corruptions,
    leaks,
    imageEndOffset,
    totalClusters: h.batEntries,
    allocatedClusters: allocated,
    fragmentedClusters: fragmented,
    messages,
  };
}
