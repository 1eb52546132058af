/**
 * What the read-ahead pipelines of convert and compare share: a plan of steps
 * taken ahead of the work on them. A planning failure becomes a step of its
 * own, raised only when the work reaches it, after every step before it is
 * done (as qemu-img reports it, in order).
 */

/** Planning failed here. */
export interface PlanError {
  kind: 'error';
  error: unknown;
}

/** Takes a plan's steps one at a time; `done` once it has ended or failed. */
export class PlanReader<S> {
  done = false;

  constructor(private readonly steps: AsyncIterator<S>) {}

  /** The next step, a failure as a step, or undefined when the plan has ended. */
  async next(): Promise<S | PlanError | undefined> {
    try {
      const r = await this.steps.next();
      if (!r.done) return r.value;
      this.done = true;
      return undefined;
    } catch (error) {
      this.done = true;
      return { kind: 'error', error };
    }
  }
}
