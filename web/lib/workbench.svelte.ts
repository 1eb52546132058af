/**
 * The page's state: the files the user gave, the images open from them, and
 * the panes that show them (one, or two side by side), each with its view.
 * Results are replaced whole, never edited, so they are held raw (no deep
 * proxies), which also lets them go to the worker as they are. One long
 * operation runs at a time, as a `Task` with progress and Cancel.
 */
import { engine, EngineStopped, onEngineStopped } from './engine-client.ts';
import type { Candidate, InfoOutcome, PickedFile, Progress } from './engine-protocol.ts';
import { Task } from './progress.svelte.ts';

/** The sample images in public/samples (made by scripts/make-samples.sh); the first is the one shown. */
const SAMPLE_FILES = ['demo.qcow2', 'base.qcow2', 'demo.vmdk'];

/** An image open in the workbench, with what `qemu-img info --backing-chain` said of it. */
export interface OpenImage {
  path: string;
  outcome: InfoOutcome;
}

export interface Pane {
  /** Path of the image it shows. */
  image?: string;
  /** Id of the view (see views/registry.ts). */
  view: string;
}

const MAX_PANES = 2;

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** The same file given again: a drop of the same file, or the same file picked twice. */
const sameFile = (a: Blob, b: Blob) =>
  a === b || (a instanceof File && b instanceof File && a.name === b.name && a.size === b.size && a.lastModified === b.lastModified);

/**
 * Adds `incoming` to `existing`. A file given again replaces itself; a
 * different file under a path already taken comes in under a folder of its
 * own (`2/disk.qcow2`) with the rest of its set, so relative references
 * inside the set still resolve within it.
 */
export function mergeFiles(existing: readonly PickedFile[], incoming: readonly PickedFile[]): { files: PickedFile[]; paths: string[] } {
  const taken = new Map(existing.map((f) => [f.path, f.blob]));
  const clash = incoming.some((f) => taken.has(f.path) && !sameFile(taken.get(f.path)!, f.blob));
  let prefix = '';
  if (clash) {
    let n = 2;
    while ([...taken.keys()].some((p) => p.startsWith(`${n}/`))) n++;
    prefix = `${n}/`;
  }
  const added = incoming.map((f) => ({ path: prefix + f.path, blob: f.blob }));
  const replaced = new Set(added.map((f) => f.path));
  return { files: [...existing.filter((f) => !replaced.has(f.path)), ...added], paths: added.map((f) => f.path) };
}

/** The image to show first among `paths`: one no other picked image uses as backing, preferring a real format to raw. */
function defaultImage(candidates: Candidate[], paths: readonly string[]): string | undefined {
  const mine = candidates.filter((c) => paths.includes(c.path));
  const tops = mine.filter((c) => c.format !== undefined && !c.referenced);
  return (tops.find((c) => c.format !== 'raw') ?? tops[0] ?? mine[0])?.path;
}

export class Workbench {
  files = $state.raw<PickedFile[]>([]);
  candidates = $state.raw<Candidate[]>([]);
  images = $state.raw<OpenImage[]>([]);
  panes = $state<Pane[]>([{ view: 'info' }]);
  /** Index of the pane that opening an image fills. */
  active = $state(0);
  busy = $state(false);
  /** A failure outside the engine's answers: a sample that did not load, a worker that broke. */
  problem = $state<string | undefined>(undefined);
  /** A note that needs no action, like a cancelled operation. */
  notice = $state<string | undefined>(undefined);
  /** The long operation running now, if any. */
  task = $state.raw<Task | undefined>(undefined);
  /** Settles when the running task ends. */
  #ended: Promise<unknown> = Promise.resolve();

  /** Picked files that open as images and that no other picked image uses as backing. */
  tops = $derived(this.candidates.filter((c) => c.format !== undefined && !c.referenced));

  constructor() {
    onEngineStopped((reason) => {
      if (reason.cancelled) this.notice = reason.message;
      else this.problem = reason.message;
    });
  }

  image(path: string | undefined): OpenImage | undefined {
    return this.images.find((i) => i.path === path);
  }

  /** Adds these files and opens the image among them in the active pane. */
  async open(files: PickedFile[]): Promise<void> {
    if (files.length === 0) return;
    const { files: all, paths } = mergeFiles(this.files, files);
    this.files = all;
    await this.#step(async () => {
      this.candidates = await engine((e) => e.candidates(all));
      const first = defaultImage(this.candidates, paths);
      if (first !== undefined) await this.#show(first, this.active);
    });
  }

  /** Adds files that were asked for (a backing file, an extent) and reopens every image that was missing one. */
  async add(files: PickedFile[]): Promise<void> {
    if (files.length === 0) return;
    this.files = mergeFiles(this.files, files).files;
    await this.#step(async () => {
      this.candidates = await engine((e) => e.candidates(this.files));
      for (const im of this.images) if (!im.outcome.ok) await this.#load(im.path);
    });
  }

  /** Shows one of the picked images in a pane (the active one by default), opening it if needed. */
  async show(path: string, pane = this.active): Promise<void> {
    await this.#step(() => this.#show(path, pane));
  }

  close(path: string): void {
    this.images = this.images.filter((i) => i.path !== path);
    for (const p of this.panes) if (p.image === path) p.image = this.images[0]?.path;
  }

  setView(pane: number, view: string): void {
    this.panes[pane]!.view = view;
    this.active = pane;
  }

  /** Two panes side by side, or back to one. */
  toggleSplit(): void {
    if (this.panes.length < MAX_PANES) {
      const other = this.images.find((i) => i.path !== this.panes[0]!.image) ?? this.images[0];
      this.panes.push({ image: other?.path, view: 'info' });
      this.active = 1;
    } else {
      this.panes.splice(1);
      this.active = 0;
    }
  }

  /** Opens the bundled samples (a qcow2 overlay with its backing file, and a VMDK), fetched from this same origin. */
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

  /**
   * Runs a long operation with progress and Cancel. Resolves to its result,
   * or to undefined when it was cancelled or the engine stopped (the page
   * then says so). Only one runs at a time: the engine's worker does one
   * thing at a time, and Cancel stops the worker; a second one waits for the
   * first to end (as a Check opened in the other pane while a Map runs).
   */
  async run<T>(label: string, op: (report: (p: Progress) => void) => Promise<T>): Promise<T | undefined> {
    while (this.task) await this.#ended;
    const task = new Task(label);
    this.task = task;
    this.problem = undefined;
    this.notice = undefined;
    const done = (async () => {
      try {
        return await op(task.report);
      } catch (e) {
        if (e instanceof EngineStopped) return undefined;
        this.problem = messageOf(e);
        return undefined;
      } finally {
        this.task = undefined;
      }
    })();
    this.#ended = done;
    return done;
  }

  async #show(path: string, pane: number): Promise<void> {
    if (!this.image(path)) await this.#load(path);
    this.panes[pane]!.image = path;
    this.active = pane;
  }

  /** (Re)reads an image's info and puts it in the list, in place if it was open. */
  async #load(path: string): Promise<void> {
    const outcome = await engine<InfoOutcome>((e) => e.info(this.files, path));
    const im: OpenImage = { path, outcome };
    this.images = this.image(path) ? this.images.map((i) => (i.path === path ? im : i)) : [...this.images, im];
  }

  async #step(step: () => Promise<void>): Promise<void> {
    this.busy = true;
    this.problem = undefined;
    try {
      await step();
    } catch (e) {
      if (!(e instanceof EngineStopped)) this.problem = messageOf(e);
    } finally {
      this.busy = false;
    }
  }
}
