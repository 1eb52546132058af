/**
 * The page's state: the files the user gave, which of them is being
 * inspected, and what the engine said about it. Results are replaced whole,
 * never edited, so they are held raw (no deep proxies), which also lets them
 * go to the worker as they are.
 */
import { engine } from './engine-client.ts';
import type { Candidate, InfoOutcome, PickedFile } from './engine-protocol.ts';

/** The sample images in public/samples, top first (made by scripts/make-samples.sh). */
const SAMPLE_FILES = ['demo.qcow2', 'base.qcow2'];

/** The image to show first: one no other picked image uses as backing, preferring a real format to raw. */
function defaultImage(candidates: Candidate[]): string | undefined {
  const tops = candidates.filter((c) => c.format !== undefined && !c.referenced);
  return (tops.find((c) => c.format !== 'raw') ?? tops[0] ?? candidates[0])?.path;
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e));

export class Workbench {
  files = $state.raw<PickedFile[]>([]);
  candidates = $state.raw<Candidate[]>([]);
  /** Path of the image being inspected. */
  current = $state<string | undefined>(undefined);
  outcome = $state.raw<InfoOutcome | undefined>(undefined);
  busy = $state(false);
  /** A failure outside the engine's answer: a sample that did not load, a worker that broke. */
  problem = $state<string | undefined>(undefined);

  /** The images worth inspecting: picked files that open and that no other picked image uses as backing. */
  tops = $derived(this.candidates.filter((c) => c.format !== undefined && !c.referenced));

  /** Only the latest request may write its answer; an older one that finishes late is dropped. */
  #request = 0;

  /** Starts over with these files. */
  async open(files: PickedFile[]): Promise<void> {
    if (files.length === 0) return;
    this.files = files;
    await this.#refresh(undefined);
  }

  /** Adds files (a backing file that was asked for) and inspects the same image again. */
  async add(files: PickedFile[]): Promise<void> {
    if (files.length === 0) return;
    const added = new Set(files.map((f) => f.path));
    this.files = [...this.files.filter((f) => !added.has(f.path)), ...files];
    await this.#refresh(this.current);
  }

  /** Inspects another of the picked files. */
  async show(path: string): Promise<void> {
    await this.#run(async (stillCurrent) => {
      this.current = path;
      const outcome = await engine().info(this.files, path);
      if (stillCurrent()) this.outcome = outcome;
    });
  }

  /** Opens the bundled sample (an overlay and its backing file), fetched from this same origin. */
  async openSample(): Promise<void> {
    this.busy = true;
    this.problem = undefined;
    try {
      const blobs = await Promise.all(
        SAMPLE_FILES.map(async (name) => {
          const res = await fetch(`samples/${name}`);
          if (!res.ok) throw new Error(`Could not load the sample ${name}: HTTP ${res.status}`);
          return { path: name, blob: await res.blob() };
        }),
      );
      await this.open(blobs);
    } catch (e) {
      this.problem = messageOf(e);
      this.busy = false;
    }
  }

  async #refresh(keep: string | undefined): Promise<void> {
    const files = this.files;
    await this.#run(async (stillCurrent) => {
      const candidates = await engine().candidates(files);
      if (!stillCurrent()) return;
      this.candidates = candidates;
      this.current = keep !== undefined && candidates.some((c) => c.path === keep) ? keep : defaultImage(candidates);
      const outcome = this.current === undefined ? undefined : await engine().info(files, this.current);
      if (stillCurrent()) this.outcome = outcome;
    });
  }

  async #run(step: (stillCurrent: () => boolean) => Promise<void>): Promise<void> {
    const id = ++this.#request;
    const stillCurrent = () => id === this.#request;
    this.busy = true;
    this.problem = undefined;
    try {
      await step(stillCurrent);
    } catch (e) {
      if (stillCurrent()) this.problem = messageOf(e);
    } finally {
      if (stillCurrent()) this.busy = false;
    }
  }
}
