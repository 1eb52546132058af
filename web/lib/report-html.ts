/**
 * A report as one self-contained HTML file: inline CSS (light and dark), the
 * difference strip as inline SVG, no scripts and no external references (its
 * own Content-Security-Policy forbids loading anything), so it reads the same
 * from a mail attachment, a ticket or a disk years later.
 */
import { EXIT_MEANINGS, verdictOf, type CompareDoc, type InfoDoc, type ReportDoc } from './report.ts';
import { stripSegments } from './report-strip.ts';
import { sizeToStr } from './format.ts';

/** Rows of the ranges table at most; the JSON export has every range. */
export const MAX_HTML_RANGES = 10_000;
const STRIP_WIDTH = 1000;
const STRIP_HEIGHT = 36;

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const CSS = `
:root{color-scheme:light dark;--bg:#f6f7f9;--surface:#fff;--surface-2:#eef0f4;--border:#d5d9e0;--text:#1b1f24;--muted:#5b6470;--same:#8fbf8f;--diff:#d64545;--warn:#e0b64a}
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--surface:#1c2027;--surface-2:#252a33;--border:#353b46;--text:#e4e7ec;--muted:#9aa3b0;--same:#3f6b45;--diff:#ff6b6b;--warn:#a8862f}}
*{box-sizing:border-box}
body{margin:0;padding:2rem;background:var(--bg);color:var(--text);font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}
main{max-width:1100px;margin:0 auto}
h1{font-size:1.5rem;margin:0 0 .3rem}
h2{font-size:.8rem;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:0 0 .6rem}
section{background:var(--surface);border:1px solid var(--border);border-radius:8px;padding:1rem 1.1rem;margin:1rem 0}
.muted{color:var(--muted)}
code,pre{font-family:ui-monospace,'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:.88em}
pre{margin:0;padding:.8rem;background:var(--surface-2);border-radius:6px;overflow:auto;white-space:pre}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid var(--border);vertical-align:top}
th.num{text-align:right}
td.num{text-align:right;font-variant-numeric:tabular-nums;font-family:ui-monospace,'DejaVu Sans Mono',Menlo,Consolas,monospace}
.verdict{border-left:6px solid var(--muted)}
.verdict.identical{border-left-color:var(--same)}
.verdict.identical-size{border-left-color:var(--warn)}
.verdict.differ,.verdict.error{border-left-color:var(--diff)}
.verdict h2{font-size:1.3rem;text-transform:none;letter-spacing:0;color:var(--text)}
svg{display:block;width:100%;height:auto}
.strip-base{fill:var(--same)}.strip-diff{fill:var(--diff)}.strip-over{fill:var(--warn)}
.axis{display:flex;justify-content:space-between;font-size:.8rem;color:var(--muted)}
`;

function page(title: string, created: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="color-scheme" content="light dark">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<h1>${esc(title)}</h1>
<p class="muted">Made by vDisk Workbench on ${esc(new Date(created).toLocaleString('en-GB', { dateStyle: 'long', timeStyle: 'medium' }))}, in the browser; the images never left that computer.</p>
${body}
</main>
</body>
</html>
`;
}

function stripSvg(doc: CompareDoc): string {
  const r = doc.result!;
  const total = Math.max(r['size-a'], r['size-b']);
  const common = Math.min(r['size-a'], r['size-b']);
  const parts = [`<rect class="strip-base" x="0" y="0" width="${STRIP_WIDTH}" height="${STRIP_HEIGHT}"/>`];
  if (total > common) {
    const x = (common / total) * STRIP_WIDTH;
    parts.push(`<rect class="strip-over" x="${x.toFixed(2)}" y="0" width="${(STRIP_WIDTH - x).toFixed(2)}" height="${STRIP_HEIGHT}"><title>Only in the larger image: ${esc(sizeToStr(total - common))}</title></rect>`);
  }
  for (const s of stripSegments(r.ranges, total, STRIP_WIDTH)) {
    const n = s.last - s.first + 1;
    const label = `${n === 1 ? 'Range' : `${n} ranges`} from offset ${s.start} to ${s.end} (${s.end - s.start} bytes)`;
    parts.push(`<rect class="strip-diff" x="${s.x.toFixed(2)}" y="0" width="${s.width.toFixed(2)}" height="${STRIP_HEIGHT}"><title>${esc(label)}</title></rect>`);
  }
  return `<svg viewBox="0 0 ${STRIP_WIDTH} ${STRIP_HEIGHT}" preserveAspectRatio="none" role="img" aria-label="Differing ranges along the disk">${parts.join('')}</svg>
<div class="axis"><span>0</span><span>${esc(sizeToStr(total))} (${total} bytes)</span></div>`;
}

function compareBody(doc: CompareDoc): string {
  const v = verdictOf(doc);
  const r = doc.result;
  const images = doc.images
    .map((im, i) => {
      const size = r ? (i === 0 ? r['size-a'] : r['size-b']) : undefined;
      return `<tr><th>${i === 0 ? 'A' : 'B'}</th><td><code>${esc(im.name)}</code></td><td>${esc(im.format ?? '')}</td><td class="num">${size === undefined ? '' : `${esc(sizeToStr(size))} (${size} bytes)`}</td></tr>`;
    })
    .join('');
  const out: string[] = [];
  out.push(`<section class="verdict ${v.kind}"><h2>${esc(v.headline)}</h2><p>${esc(v.summary)}</p></section>`);
  out.push(`<section><h2>Images</h2><table><thead><tr><th></th><th>File</th><th>Format</th><th class="num">Virtual size</th></tr></thead><tbody>${images}</tbody></table>
<p class="muted">Options: ${doc.options.strict ? 'strict (-s)' : 'not strict'}; ${doc.options.all ? 'every differing range' : 'first difference only'}.</p></section>`);
  const said = r ? r.messages.join('\n') : `qemu-img: ${doc.error?.message ?? ''}`;
  out.push(`<section><h2>qemu-img</h2><pre>$ ${esc(doc.command)}\n${esc(said)}</pre><p>Exit code <strong>${doc.exitCode}</strong>: ${esc(EXIT_MEANINGS[doc.exitCode] ?? 'error')}.</p></section>`);
  if (r && r.ranges.length > 0) {
    const rows = r.ranges
      .slice(0, MAX_HTML_RANGES)
      .map((x, i) => `<tr><td class="num">${i + 1}</td><td class="num">${x.start}</td><td class="num">${x.length}</td><td class="num">${x.start + x.length}</td><td><code>${esc(x['hash-a'] ?? '—')}</code></td><td><code>${esc(x['hash-b'] ?? '—')}</code></td></tr>`)
      .join('\n');
    const left = r.ranges.length - Math.min(r.ranges.length, MAX_HTML_RANGES) + (doc.omittedRanges ?? 0);
    out.push(`<section><h2>Differences along the disk</h2>${stripSvg(doc)}</section>`);
    out.push(`<section><h2>Differing ranges</h2><p class="muted">Offsets and lengths in bytes; hashes are xxHash32 of each side's bytes over the range.</p>
<table><thead><tr><th>#</th><th>Start</th><th>Length</th><th>End</th><th>Hash A</th><th>Hash B</th></tr></thead><tbody>
${rows}
</tbody></table>${left > 0 ? `<p class="muted">${left} more ranges are not listed here.</p>` : ''}</section>`);
  }
  return out.join('\n');
}

function infoBody(doc: InfoDoc): string {
  const out: string[] = [];
  if (doc.error) out.push(`<section class="verdict error"><h2>Could not open the whole chain</h2><p><code>${esc(doc.error.file)}</code>: ${esc(doc.error.message)}</p></section>`);
  out.push(`<section><h2>qemu-img info</h2><pre>$ ${esc(doc.command)}\n${esc(doc.human)}</pre></section>`);
  out.push(`<section><h2>JSON</h2><pre>${esc(JSON.stringify(doc.json, null, 4))}</pre></section>`);
  return out.join('\n');
}

export function reportHtml(doc: ReportDoc): string {
  return page(doc.title, doc.created, doc.kind === 'compare' ? compareBody(doc) : infoBody(doc));
}
