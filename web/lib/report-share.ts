/**
 * Reports carried in a link: the report's JSON, deflated and base64url
 * encoded, in the URL fragment (`#report=…`). Browsers never send the
 * fragment to the server, so a shared report goes nowhere but to the person
 * who opens the link. Links are kept short enough to paste by leaving out
 * ranges past a limit (the report says how many); reading one back is
 * bounded too, so a crafted link cannot make the page inflate gigabytes.
 */
import { deflateSync, Inflate } from 'fflate';
import { asReportDoc, type CompareDoc, type ReportDoc } from './report.ts';

export const FRAGMENT_PREFIX = '#report=';
/** Ranges a link carries at most; the JSON export has all of them. */
export const MAX_LINK_RANGES = 1000;
/** Longest fragment a link is made with: it has to survive being pasted into a chat or a ticket. */
const MAX_FRAGMENT = 64 * 1024;
/** Longest fragment read back, and the most its JSON may inflate to. */
const MAX_READ_FRAGMENT = 2 * 1024 * 1024;
const MAX_INFLATED = 16 * 1024 * 1024;
/** Input fed to the inflater at a time, so its output is checked against the limit as it grows. */
const INFLATE_STEP = 1024;

function toBase64Url(bytes: Uint8Array): string {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text: string): Uint8Array {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function inflateBounded(data: Uint8Array): Uint8Array {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const inflater = new Inflate((chunk) => {
    size += chunk.length;
    if (size > MAX_INFLATED) throw new Error('This link holds more than a report would.');
    chunks.push(chunk);
  });
  for (let i = 0; i < data.length; i += INFLATE_STEP) inflater.push(data.subarray(i, i + INFLATE_STEP), i + INFLATE_STEP >= data.length);
  if (data.length === 0) throw new Error('This link holds no report.');
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const encode = (doc: ReportDoc) => toBase64Url(deflateSync(new TextEncoder().encode(JSON.stringify(doc)), { level: 9 }));

/** A compare report with at most `keep` ranges, saying how many it left out. */
function capped(doc: CompareDoc, keep: number): CompareDoc {
  if (!doc.result || doc.result.ranges.length <= keep) return doc;
  const omitted = doc.result.ranges.length - keep + (doc.omittedRanges ?? 0);
  return { ...doc, result: { ...doc.result, ranges: doc.result.ranges.slice(0, keep) }, omittedRanges: omitted };
}

/** The fragment for a report, and how many ranges it had to leave out. */
export function shareFragment(doc: ReportDoc): { fragment: string; omitted: number } {
  const omittedBefore = (d: ReportDoc) => (d.kind === 'compare' ? (d.omittedRanges ?? 0) : 0);
  let keep = doc.kind === 'compare' ? Math.min(doc.result?.ranges.length ?? 0, MAX_LINK_RANGES) : 0;
  for (;;) {
    const shown = doc.kind === 'compare' ? capped(doc, keep) : doc;
    const data = encode(shown);
    if (data.length <= MAX_FRAGMENT) return { fragment: FRAGMENT_PREFIX + data, omitted: omittedBefore(shown) - omittedBefore(doc) };
    if (doc.kind !== 'compare' || keep === 0) throw new Error('This report is too large for a link; export it as JSON or HTML instead.');
    keep = Math.floor(keep / 2);
  }
}

/** A link to this page that opens the report. */
export function shareLink(doc: ReportDoc): { url: string; omitted: number } {
  const { fragment, omitted } = shareFragment(doc);
  return { url: location.origin + location.pathname + location.search + fragment, omitted };
}

/** Whether a URL fragment carries a report. */
export const isReportFragment = (hash: string) => hash.startsWith(FRAGMENT_PREFIX);

/** The report a fragment carries; throws with a message for the page when it is damaged. */
export function readFragment(hash: string): ReportDoc {
  const data = hash.slice(FRAGMENT_PREFIX.length);
  if (data.length > MAX_READ_FRAGMENT) throw new Error('This link is too long to hold a report.');
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(inflateBounded(fromBase64Url(data))));
  } catch (e) {
    if (e instanceof Error && e.message.startsWith('This link')) throw e;
    throw new Error('This link’s report is damaged: it may have been cut short when it was copied.');
  }
  return asReportDoc(json);
}
