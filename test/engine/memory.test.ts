// Memory bounds: map, compare and convert -O qcow2 run in a child process (the
// CLI) on a 16 TiB-virtual sparse qcow2 with data scattered over it and on a
// 4 GiB dense raw image, and the compressing conversions (their worker
// threads count too) on 1 GiB of text and random bytes; the process's peak resident set size
// must stay under 300 MiB, whatever the image's size. Not a timing test: only
// memory is asserted. The dense images are made here and deleted afterwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describeRun, qemuImg, run, ROOT, VDISK, type RunResult } from '../helpers/run.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
const PEAK_RSS_LIMIT_MIB = 300;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdisk-memory-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ok = (label: string, r: RunResult) => expect(r.status, describeRun(label, r)).toBe(0);

/** Runs vdisk with its peak RSS reported on stderr (test/helpers/peak-rss.mjs). */
function vdiskPeak(args: string[]): { r: RunResult; peakMiB: number } {
  const r = run(process.execPath, ['--import', join(ROOT, 'test/helpers/peak-rss.mjs'), VDISK, ...args], { cwd: dir, timeoutMs: 120_000 });
  const m = /PEAK_RSS_KIB (\d+)/.exec(r.stderr);
  expect(m, describeRun('vdisk ' + args.join(' '), r)).not.toBeNull();
  return { r, peakMiB: Number(m![1]) / 1024 };
}

/** map, compare with its own conversion, and the conversion itself, each under the bound. */
function boundedOps(image: string): void {
  const out = `${image}.out.qcow2`;
  const converted = vdiskPeak(['convert', '-O', 'qcow2', image, out]);
  ok('vdisk convert', converted.r);
  const mapped = vdiskPeak(['map', '--output=json', image]);
  ok('vdisk map', mapped.r);
  const compared = vdiskPeak(['compare', image, out]);
  ok('vdisk compare', compared.r);
  expect(compared.r.stdout).toBe('Images are identical.\n');
  expect({ convert: converted.peakMiB, map: mapped.peakMiB, compare: compared.peakMiB }).toSatisfy(
    (peaks: Record<string, number>) => Object.values(peaks).every((p) => p < PEAK_RSS_LIMIT_MIB),
    `peak RSS in MiB under ${PEAK_RSS_LIMIT_MIB}`,
  );
  rmSync(join(dir, out));
}

describe('peak RSS stays under 300 MiB', () => {
  it('on a 16 TiB sparse qcow2 with data scattered over it', () => {
    ok('qemu-img create', qemuImg(['create', '-q', '-f', 'qcow2', 'huge.qcow2', '16T'], { cwd: dir }));
    // One run of data in each TiB, at an odd place in it, one compressed cluster and one zero range.
    const writes = Array.from({ length: 16 }, (_, i) => `write -P ${0x40 + i} ${i * TiB + i * 37 * GiB + i * 3 * MiB} 192k`);
    writes.push('write -c -P 0x77 4T 128k', 'write -z 9T 1M');
    ok('qemu-io', run('qemu-io', ['-f', 'qcow2', ...writes.flatMap((w) => ['-c', w]), 'huge.qcow2'], { cwd: dir }));
    boundedOps('huge.qcow2');
    // The map is also right: the same as qemu-img's.
    expect(vdiskPeak(['map', '--output=json', 'huge.qcow2']).r.stdout).toBe(qemuImg(['map', '--output=json', 'huge.qcow2'], { cwd: dir }).stdout);
  });

  it('on a 4 GiB dense raw image', () => {
    // Every byte non-zero, each 4 MiB piece numbered, written from one buffer.
    const piece = new Uint8Array(4 * MiB);
    for (let i = 0; i < piece.length; i++) piece[i] = ((i * 131 + (i >> 12)) & 0xff) | 1;
    const fd = openSync(join(dir, 'dense.raw'), 'w');
    try {
      for (let at = 0; at < 4096 * MiB; at += piece.length) {
        new DataView(piece.buffer).setUint32(0, (at / piece.length) | 0x01000000, true);
        writeSync(fd, piece, 0, piece.length, at);
      }
    } finally {
      closeSync(fd);
    }
    boundedOps('dense.raw');
    rmSync(join(dir, 'dense.raw'));
  }, 180_000);

  it('compressing 1 GiB of text and random bytes, into qcow2 and stream-optimized VMDK', () => {
    // Per 4 MiB: log-like lines, numbered so that no two pieces are alike, then random bytes (units that do not shrink).
    const fd = openSync(join(dir, 'text.raw'), 'w');
    try {
      for (let at = 0, line = 0; at < GiB; at += 4 * MiB) {
        let text = '';
        while (text.length < 2 * MiB) text += `2026-11-21 12:${String(line % 60).padStart(2, '0')} host app[${line % 977}]: request ${line++} served in ${line % 89} ms\n`;
        const piece = Buffer.concat([Buffer.from(text.slice(0, 2 * MiB)), randomBytes(2 * MiB)]);
        writeSync(fd, piece, 0, piece.length, at);
      }
    } finally {
      closeSync(fd);
    }
    const peaks: Record<string, number> = {};
    for (const [label, args] of [
      ['qcow2 -c', ['-c', '-O', 'qcow2']],
      ['vmdk streamOptimized', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']],
    ] as const) {
      const converted = vdiskPeak(['convert', '-f', 'raw', ...args, 'text.raw', 'text.out']);
      ok(`vdisk convert ${label}`, converted.r);
      peaks[label] = converted.peakMiB;
      rmSync(join(dir, 'text.out'));
    }
    expect(peaks).toSatisfy((p: Record<string, number>) => Object.values(p).every((v) => v < PEAK_RSS_LIMIT_MIB), `peak RSS in MiB under ${PEAK_RSS_LIMIT_MIB}`);
    rmSync(join(dir, 'text.raw'));
  }, 180_000);
});
