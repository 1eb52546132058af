/**
 * Whether the page shows reports instead of the workbench: the saved
 * reports list, one report (saved, or carried by a `#report=` link), or why
 * a link could not be read. A link is read when the page loads and whenever
 * the fragment changes; leaving the report drops the fragment, so a reload
 * goes back to the workbench.
 */
import { isReportFragment, readFragment } from '../../lib/report-share.ts';
import type { ReportDoc } from '../../lib/report.ts';

export type ReportPage =
  | { kind: 'list' }
  | { kind: 'report'; doc: ReportDoc; from: 'link' | 'saved'; id?: string }
  | { kind: 'bad-link'; message: string };

class ReportRoute {
  page = $state.raw<ReportPage | undefined>(undefined);

  constructor() {
    this.#readHash();
    window.addEventListener('hashchange', () => this.#readHash());
  }

  list(): void {
    this.#dropHash();
    this.page = { kind: 'list' };
  }

  show(doc: ReportDoc, id: string): void {
    this.#dropHash();
    this.page = { kind: 'report', doc, from: 'saved', id };
  }

  /** Back to the workbench. */
  close(): void {
    this.#dropHash();
    this.page = undefined;
  }

  #readHash(): void {
    if (!isReportFragment(location.hash)) return;
    try {
      this.page = { kind: 'report', doc: readFragment(location.hash), from: 'link' };
    } catch (e) {
      this.page = { kind: 'bad-link', message: e instanceof Error ? e.message : String(e) };
    }
  }

  #dropHash(): void {
    if (isReportFragment(location.hash)) history.replaceState(history.state, '', location.pathname + location.search);
  }
}

export const reportRoute = new ReportRoute();
