/**
 * Reports without a browser: a report survives its trip through a link, a
 * link is kept short by leaving out ranges (and says so), a damaged or
 * crafted link is refused with a message, the strip gives every range a
 * visible mark, and the HTML export escapes what it shows and loads nothing.
 */
// The report modules reach the worker's types, which import the kernels with Vite's `?url`.
/// <reference types="vite/client" />
import { describe, expect, test } from 'vitest';
import { deflateSync } from 'fflate';
import { compareDoc, verdictOf, type CompareDoc, type RangeJson } from '../../web/lib/report.ts';
import { FRAGMENT_PREFIX, MAX_LINK_RANGES, readFragment, shareFragment } from '../../web/lib/report-share.ts';
import { stripSegments } from '../../web/lib/report-strip.ts';
import { reportHtml } from '../../web/lib/report-html.ts';

const GiB = 1024 ** 3;

/** A comparison of two 4 GiB images that differ in `n` scattered sectors, with hashes that do not compress. */
function differing(n: number): CompareDoc {
  const hash = (i: number, side: number) => ((Math.imul(i + 1, 2654435761) ^ side) >>> 0).toString(16).padStart(8, '0');
  const ranges = Array.from({ length: n }, (_, i) => ({ start: i * 1024 * 1024 + 4096, length: 512, hashA: hash(i, 1), hashB: hash(i, 2) }));
  const messages = n > 0 ? [`Content mismatch at offset ${ranges[0]!.start}!`] : ['Images are identical.'];
  return compareDoc(
    [
      { name: 'disk <1>.qcow2', format: 'qcow2' },
      { name: 'disk-2.raw', format: 'raw' },
    ],
    { strict: false, all: true },
    { ok: true, value: { identical: n === 0, sizeA: 4 * GiB, sizeB: 4 * GiB, messages, ranges }, command: 'qemu-img compare a b', exitCode: n === 0 ? 0 : 1 },
    new Date('2026-01-02T03:04:05Z'),
  );
}

/** A fragment holding any bytes as a report would. */
const fragmentOf = (bytes: Uint8Array) => FRAGMENT_PREFIX + Buffer.from(deflateSync(bytes)).toString('base64url');

describe('share links', () => {
  test('carry the report whole when it is small', () => {
    const doc = differing(12);
    const { fragment, omitted } = shareFragment(doc);
    expect(omitted).toBe(0);
    expect(fragment).toMatch(/^#report=[\w-]+$/);
    expect(readFragment(fragment)).toEqual(doc);
  });

  test('leave out ranges past the limit, and the report says how many', () => {
    const doc = differing(MAX_LINK_RANGES * 3);
    const { fragment, omitted } = shareFragment(doc);
    const back = readFragment(fragment) as CompareDoc;
    expect(back.result!.ranges.length).toBeLessThanOrEqual(MAX_LINK_RANGES);
    expect(back.result!.ranges.length + omitted).toBe(doc.result!.ranges.length);
    expect(back.omittedRanges).toBe(omitted);
    expect(back.result!.ranges).toEqual(doc.result!.ranges.slice(0, back.result!.ranges.length));
    expect(verdictOf(back).summary).toContain(`${(MAX_LINK_RANGES * 3).toLocaleString('en-US')} ranges`);
    expect(fragment.length).toBeLessThanOrEqual(64 * 1024 + FRAGMENT_PREFIX.length);
  });

  test('a damaged link, a link that inflates past any report, and a link to something else are refused with a message', () => {
    const { fragment } = shareFragment(differing(3));
    expect(() => readFragment(fragment.slice(0, fragment.length - 20))).toThrow(/damaged/);
    expect(() => readFragment(fragmentOf(new Uint8Array(17 * 1024 * 1024)))).toThrow(/more than a report/);
    expect(() => readFragment(fragmentOf(new TextEncoder().encode('{"kind":"other"}')))).toThrow(/not a vDisk Workbench report/);
  });
});

describe('difference strip', () => {
  test('every range gets a mark at least the minimum width, and marks that would touch merge', () => {
    const ranges: RangeJson[] = [
      { start: 0, length: 512, 'hash-a': null, 'hash-b': null },
      { start: 1024, length: 512, 'hash-a': null, 'hash-b': null },
      { start: 2 * GiB, length: 512, 'hash-a': null, 'hash-b': null },
      { start: 4 * GiB - 512, length: 512, 'hash-a': null, 'hash-b': null },
    ];
    const segments = stripSegments(ranges, 4 * GiB, 1000, 3);
    expect(segments.map((s) => [s.first, s.last])).toEqual([
      [0, 1],
      [2, 2],
      [3, 3],
    ]);
    for (const s of segments) {
      expect(s.width).toBeGreaterThanOrEqual(3);
      expect(s.x).toBeGreaterThanOrEqual(0);
      expect(s.x + s.width).toBeLessThanOrEqual(1000);
    }
    expect(segments[1]!.x).toBeCloseTo(500, 5);
  });
});

describe('HTML export', () => {
  test('is one page with its ranges and qemu-img’s words, escapes names, and refers to nothing outside itself', () => {
    const doc = differing(5);
    const html = reportHtml(doc);
    expect(html).not.toMatch(/<script|\bsrc=|\bhref=|url\(/i);
    expect(html).toContain('disk &#60;1&#62;.qcow2');
    expect(html).not.toContain('disk <1>');
    expect(html).toContain(doc.result!.messages[0]);
    for (const r of doc.result!.ranges) expect(html).toContain(`<code>${r['hash-a']}</code>`);
    expect(html).toContain("default-src 'none'");
  });
});
