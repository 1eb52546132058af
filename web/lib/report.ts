/**
 * Reports: what a Compare or an Info result says, as plain data that can be
 * saved, exported (JSON, HTML) and carried in a link. A report needs no
 * images to be read again; it holds the answer, the command it answers and
 * qemu-img's own words. Also the plain-language verdict both the live views
 * and the report views show.
 */
import type { CompareOutcome, CompareReport, DiffRange, InfoText, QValue } from './engine-protocol.ts';
import { sizeToStr } from './format.ts';

export const REPORT_VERSION = 1;

/** A differing range as `vdisk compare --all --output=json` prints it. */
export interface RangeJson {
  start: number;
  length: number;
  'hash-a': string | null;
  'hash-b': string | null;
}

/** `vdisk compare --all --output=json`, field for field. */
export interface CompareJson {
  identical: boolean;
  'size-a': number;
  'size-b': number;
  messages: string[];
  ranges: RangeJson[];
}

export interface ReportImage {
  name: string;
  format?: string;
}

export interface CompareDoc {
  kind: 'compare';
  version: number;
  /** ISO date of the comparison. */
  created: string;
  title: string;
  images: [ReportImage, ReportImage];
  options: { strict: boolean; all: boolean };
  command: string;
  exitCode: number;
  /** The answer; absent when the comparison failed. */
  result?: CompareJson;
  error?: { file: string; message: string };
  /** Ranges left out to keep the report small (a link); `result.ranges` holds the rest. */
  omittedRanges?: number;
}

export interface InfoDoc {
  kind: 'info';
  version: number;
  created: string;
  title: string;
  image: ReportImage;
  command: string;
  /** qemu-img info's text output. */
  human: string;
  /** qemu-img info's JSON output (an array with `--backing-chain`). */
  json: QValue;
  error?: { file: string; message: string };
}

export type ReportDoc = CompareDoc | InfoDoc;

export function compareDoc(
  images: [ReportImage, ReportImage],
  options: { strict: boolean; all: boolean },
  outcome: CompareOutcome,
  created = new Date(),
): CompareDoc {
  const doc: CompareDoc = {
    kind: 'compare',
    version: REPORT_VERSION,
    created: created.toISOString(),
    title: `Compare ${images[0].name} with ${images[1].name}`,
    images,
    options,
    command: outcome.command,
    exitCode: outcome.exitCode,
  };
  if (outcome.ok) doc.result = compareJson(outcome.value);
  else doc.error = { file: outcome.error.file, message: outcome.error.message };
  return doc;
}

export function compareJson(r: CompareReport): CompareJson {
  const range = (x: DiffRange): RangeJson => ({ start: x.start, length: x.length, 'hash-a': x.hashA ?? null, 'hash-b': x.hashB ?? null });
  return { identical: r.identical, 'size-a': r.sizeA, 'size-b': r.sizeB, messages: r.messages, ranges: r.ranges.map(range) };
}

export function infoDoc(image: ReportImage, text: InfoText, error?: { file: string; message: string }, created = new Date()): InfoDoc {
  return {
    kind: 'info',
    version: REPORT_VERSION,
    created: created.toISOString(),
    title: `Info of ${image.name}`,
    image,
    command: text.command,
    human: text.human,
    json: JSON.parse(text.json) as QValue,
    ...(error ? { error } : {}),
  };
}

export const EXIT_MEANINGS: Record<number, string> = {
  0: 'images are identical',
  1: 'images differ',
  2: 'an image could not be opened',
  3: 'a sector allocation test failed',
  4: 'a read failed',
};

export type VerdictKind = 'identical' | 'identical-size' | 'differ' | 'error';

export interface Verdict {
  kind: VerdictKind;
  /** A short headline. */
  headline: string;
  /** The same in a plain sentence or two. */
  summary: string;
  /** Where the first difference is, when there is one. */
  firstDifference?: number;
}

const bytes = (n: number) => `${n.toLocaleString('en-US')} bytes`;
const sized = (n: number) => `${sizeToStr(n)} (${bytes(n)})`;

/** The offset of the first difference: the first range, or where strict mode found the allocation differ. */
export function firstDifference(r: CompareJson): number | undefined {
  if (r.ranges[0]) return r.ranges[0].start;
  // Strict mode stops at a block-status mismatch, which the engine reports only in qemu-img's message.
  const strict = r.messages.map((m) => /^Strict mode: Offset (\d+) block status mismatch!$/.exec(m)).find((m) => m);
  return strict ? Number(strict[1]) : undefined;
}

export function verdictOf(doc: CompareDoc): Verdict {
  const r = doc.result;
  if (!r) {
    return {
      kind: 'error',
      headline: 'Could not compare',
      summary: `${doc.error?.message ?? 'The comparison failed.'} qemu-img would exit with ${doc.exitCode}: ${EXIT_MEANINGS[doc.exitCode] ?? 'an error'}.`,
    };
  }
  const [a, b] = doc.images;
  const sizesDiffer = r['size-a'] !== r['size-b'];
  const sizes = `${a.name} is ${sized(r['size-a'])}, ${b.name} is ${sized(r['size-b'])}`;
  if (r.identical) {
    if (sizesDiffer) {
      const extra = Math.abs(r['size-a'] - r['size-b']);
      return {
        kind: 'identical-size',
        headline: 'Identical, but the sizes differ',
        summary: `${sizes}. The first ${sized(Math.min(r['size-a'], r['size-b']))} read the same, and the extra ${sizeToStr(extra)} of the larger image reads as zeros, so qemu-img calls them identical, with a warning.`,
      };
    }
    return {
      kind: 'identical',
      headline: 'Identical',
      summary: `Every byte of the ${sized(r['size-a'])} guest disk reads the same in both images${doc.options.strict ? ', and the allocation matches too (strict mode)' : ''}.`,
    };
  }
  const first = firstDifference(r);
  if (doc.options.strict && sizesDiffer && first === undefined) {
    return { kind: 'differ', headline: 'Different sizes', summary: `${sizes}. In strict mode images of different sizes always differ.` };
  }
  if (r.messages.some((m) => m.startsWith('Strict mode: Offset'))) {
    return {
      kind: 'differ',
      headline: 'Allocation differs',
      summary: `At offset ${bytes(first ?? 0)} one image has data allocated where the other does not (or the other way round). Strict mode counts that as a difference even where both read the same.`,
      firstDifference: first,
    };
  }
  // A report cut short (a link) no longer knows the total length of what it left out.
  const total = doc.omittedRanges ? undefined : r.ranges.reduce((s, x) => s + x.length, 0);
  const where = `The first difference is at offset ${bytes(first ?? 0)}${first !== undefined && first >= 1024 ? ` (${sizeToStr(first)})` : ''}.`;
  const count = r.ranges.length + (doc.omittedRanges ?? 0);
  const extent = !doc.options.all
    ? 'The comparison stopped there, as qemu-img does; turn on "All ranges" to find every difference.'
    : count === 1 && total !== undefined
      ? `They differ in one range of ${sizeToStr(total)}.`
      : `They differ in ${count.toLocaleString('en-US')} ranges${total === undefined ? '' : `, ${sizeToStr(total)} in all`}.`;
  return {
    kind: 'differ',
    headline: 'Different',
    summary: `${sizesDiffer ? `${sizes}. ` : ''}${where} ${extent}`,
    firstDifference: first,
  };
}

/** A file name for a report's exports: its title made safe, and the date. */
export function reportFileName(doc: ReportDoc, ext: string): string {
  const stem = doc.title.replace(/[^\w.-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 80) || 'report';
  return `${stem}-${doc.created.slice(0, 10)}.${ext}`;
}

/** A report read back from a link or storage: the shape is checked before anything shows it. */
export function asReportDoc(value: unknown): ReportDoc {
  const v = value as Partial<ReportDoc> | null;
  if (typeof v !== 'object' || v === null || (v.kind !== 'compare' && v.kind !== 'info') || typeof v.title !== 'string' || typeof v.created !== 'string') {
    throw new Error('This is not a vDisk Workbench report.');
  }
  if (typeof v.version !== 'number' || v.version > REPORT_VERSION) throw new Error('This report was made by a newer version of the app.');
  if (v.kind === 'compare') {
    const c = v as CompareDoc;
    if (!Array.isArray(c.images) || c.images.length !== 2 || (c.result && !Array.isArray(c.result.ranges))) throw new Error('This compare report is incomplete.');
  } else if (typeof (v as InfoDoc).human !== 'string') {
    throw new Error('This info report is incomplete.');
  }
  return v as ReportDoc;
}
