/**
 * A long operation as the page shows it: what it is, how far it has got, its
 * rate and the time left, and its Cancel (which stops the engine's worker —
 * the only way to stop a WebAssembly loop that is mid-run).
 */
import { stopEngine } from './engine-client.ts';
import type { Progress } from './engine-protocol.ts';

/** Rate is measured over this window, so it follows changes (a hole, then data) without jumping at each report. */
const WINDOW_MS = 3000;

export class Task {
  done = $state(0);
  total = $state(0);
  /** Bytes per second over the last few seconds; undefined until there is something to measure. */
  rate = $state<number | undefined>(undefined);
  /** Seconds left at the current rate. */
  eta = $state<number | undefined>(undefined);
  readonly started = performance.now();
  #samples: { t: number; done: number }[] = [];

  constructor(readonly label: string) {}

  /** The progress callback to hand to the engine. */
  readonly report = (p: Progress): void => {
    const t = performance.now();
    this.done = p.done;
    this.total = p.total;
    this.#samples.push({ t, done: p.done });
    while (this.#samples.length > 2 && t - this.#samples[0]!.t > WINDOW_MS) this.#samples.shift();
    const first = this.#samples[0]!;
    if (t - first.t >= 250 && p.done > first.done) {
      this.rate = ((p.done - first.done) * 1000) / (t - first.t);
      this.eta = (p.total - p.done) / this.rate;
    }
  };

  get fraction(): number {
    return this.total > 0 ? this.done / this.total : 0;
  }

  cancel(): void {
    stopEngine(`${this.label} was cancelled.`);
  }
}
