/**
 * The `-p` progress line: qemu-img's `    (NN.NN/100%)`, rewritten in place
 * with a carriage return and printed when it has moved by more than one
 * point (qemu's rule), followed by the average rate so far and the time left.
 * The last line is qemu's `    (100.00/100%)` alone.
 */
import { sizeToStr } from '../engine/format/human.ts';

/** Points the percentage must move before it is printed again (qemu-img convert's min_skip). */
const MIN_SKIP = 1;

export interface ProgressLine {
  /** `done` of `total` guest bytes handled. */
  update(done: number, total: number): void;
  /** Prints the 100% line and ends it. */
  end(): void;
}

/** `m:ss`, or `h:mm:ss` from an hour up. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const two = (n: number) => String(n).padStart(2, '0');
  const h = Math.floor(s / 3600);
  const m = Math.floor(s / 60) % 60;
  return h > 0 ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

export function progressLine(write: (text: string) => void, now: () => number = () => performance.now() / 1000): ProgressLine {
  const start = now();
  let last = -Infinity;
  /** Width of the line on screen, so a shorter one can blank out the rest. */
  let width = 0;
  const print = (pct: number, tail: string, end = '\r') => {
    const line = `    (${pct.toFixed(2)}/100%)${tail}`;
    write(line.padEnd(width) + end);
    width = line.length;
    last = pct;
  };
  return {
    update(done, total) {
      const pct = total > 0 ? Math.floor((done / total) * 10000) / 100 : 100;
      if (!(pct > last + MIN_SKIP || pct < last - MIN_SKIP || pct === 0 || pct === 100)) return;
      const elapsed = now() - start;
      const rate = elapsed > 0 ? done / elapsed : 0;
      print(pct, rate > 0 && done < total ? `  ${sizeToStr(rate)}/s  ETA ${clock((total - done) / rate)}` : '');
    },
    end() {
      print(100, '', '\r\n');
    },
  };
}
