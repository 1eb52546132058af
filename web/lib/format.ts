/**
 * Numbers as qemu-img prints them, for the page. Sizes, dates and the order
 * of format-specific keys come from the engine's own formatters (pure
 * functions, no I/O), so the page and `vdisk info` agree.
 */
import { localDateTime, sizeToStr, vmClock } from '../../engine/format/human.ts';
import { qdictOrder } from '../../engine/format/qemu-json.ts';

export { localDateTime, qdictOrder, sizeToStr, vmClock };

/** "4 MiB (4194304 bytes)", qemu-img's virtual size line. */
export function sizeWithBytes(bytes: number): string {
  return `${sizeToStr(bytes)} (${bytes} bytes)`;
}
