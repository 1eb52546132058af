/**
 * A comparison as the Compare view keeps it: the image to compare with, the
 * options, and the last answer with the files it was made from. Sessions
 * live per workbench and image, outside the view, so switching tabs or
 * panes does not throw away a long comparison, and a comparison keeps
 * running (with its progress and Cancel in the status row) while another
 * view is shown.
 */
import { proxy } from 'comlink';
import { engine } from '../../lib/engine-client.ts';
import type { CompareOutcome, PickedFile } from '../../lib/engine-protocol.ts';
import { compareDoc, type CompareDoc } from '../../lib/report.ts';
import { loadSetting, saveSetting } from '../../lib/store.ts';
import type { Workbench } from '../../lib/workbench.svelte.ts';

const SETTING = 'compare.options';

export interface CompareRun {
  doc: CompareDoc;
  /** The files as they were when compared; the hex view reads these, whatever was picked since. */
  files: PickedFile[];
  seconds: number;
}

export class CompareSession {
  /** Path of the image to compare with. */
  other = $state<string | undefined>(undefined);
  strict = $state(false);
  /** Every differing range rather than only the first; on by default here, where qemu-img has no such option. */
  all = $state(true);
  last = $state.raw<CompareRun | undefined>(undefined);
  /** The range the hex view shows, as an index into the answer's ranges. */
  selected = $state(0);
  #touched = false;

  constructor(
    readonly wb: Workbench,
    readonly path: string,
  ) {
    void loadSetting<{ strict: boolean; all: boolean }>(SETTING).then((o) => {
      if (!o || this.#touched) return;
      this.strict = o.strict;
      this.all = o.all;
    });
  }

  setOptions(o: { strict?: boolean; all?: boolean }): void {
    this.#touched = true;
    if (o.strict !== undefined) this.strict = o.strict;
    if (o.all !== undefined) this.all = o.all;
    void saveSetting(SETTING, { strict: this.strict, all: this.all });
  }

  /** True when a compared file has since been replaced by another of the same path. */
  get stale(): boolean {
    const run = this.last;
    if (!run) return false;
    const now = new Map(this.wb.files.map((f) => [f.path, f.blob]));
    return run.files.some((f) => now.has(f.path) && now.get(f.path) !== f.blob);
  }

  async compare(): Promise<void> {
    const other = this.other;
    if (other === undefined) return;
    const files = this.wb.files;
    const options = { strict: this.strict, all: this.all };
    const formatOf = (path: string) => this.wb.candidates.find((c) => c.path === path)?.format;
    const req = { a: { name: this.path }, b: { name: other }, ...options };
    const started = performance.now();
    const outcome = await this.wb.run(`Compare with ${other}`, (report) => engine<CompareOutcome>((e) => e.compare(files, req, proxy(report))));
    // Cancelled, or the engine stopped: the page already says so.
    if (!outcome) return;
    const images: CompareDoc['images'] = [
      { name: this.path, format: formatOf(this.path) },
      { name: other, format: formatOf(other) },
    ];
    this.last = { doc: compareDoc(images, options, outcome), files, seconds: (performance.now() - started) / 1000 };
    this.selected = 0;
  }
}

const sessions = new WeakMap<Workbench, Map<string, CompareSession>>();

/** The session of `path` in this workbench, made on first use. */
export function compareSession(wb: Workbench, path: string): CompareSession {
  let byPath = sessions.get(wb);
  if (!byPath) sessions.set(wb, (byPath = new Map()));
  let s = byPath.get(path);
  if (!s) byPath.set(path, (s = new CompareSession(wb, path)));
  return s;
}
