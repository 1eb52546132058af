/**
 * A report leaving the app: downloaded as JSON or as one HTML file (small
 * files, made whole in memory and handed to the browser with an
 * `<a download>` click), or kept in IndexedDB with the saved reports.
 */
import { reportFileName, type ReportDoc } from './report.ts';
import { reportHtml } from './report-html.ts';
import { saveReport } from './store.ts';
import { download } from './download.ts';

export function downloadJson(doc: ReportDoc): void {
  download(new Blob([JSON.stringify(doc, null, 2) + '\n'], { type: 'application/json' }), reportFileName(doc, 'json'));
}

export function downloadHtml(doc: ReportDoc): void {
  download(new Blob([reportHtml(doc)], { type: 'text/html' }), reportFileName(doc, 'html'));
}

/** Saves the report with the others; returns its id. */
export async function keepReport(doc: ReportDoc): Promise<string> {
  const id = crypto.randomUUID();
  await saveReport({ id, kind: doc.kind, title: doc.title, savedAt: Date.now(), data: doc });
  return id;
}
