/**
 * The web app in headless Chromium, on the bench's GIB-GiB images: the built
 * app (VDISK_DIST, default dist/) is served from 127.0.0.1 and each run opens
 * a fresh page, then times, inside the page (from the user's action to the
 * result in the DOM): opening the qcow2 until its info is on screen, its Map
 * until drawn, and a compare of the qcow2 with its raw source, against
 * `qemu-img compare` of the same files in the same run. Medians of RUNS runs.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM_LAUNCH, DIST, serve } from '../../scripts/static-server.ts';
import { benchImages } from '../images.ts';
import { GIB, median, results, RUNS, time } from '../lib.ts';

/**
 * Milliseconds from the next `event` (a click, a file input's change) to
 * `selector` matching, measured in the page so no round trip to the
 * browser counts. The watch is set up before `act` runs.
 */
async function timed(page: Page, event: 'click' | 'change', selector: string, act: () => Promise<void>): Promise<number> {
  await page.evaluate(
    ([ev, sel]) => {
      const w = window as unknown as { benchWait?: Promise<number> };
      w.benchWait = new Promise<number>((resolve) => {
        let t0: number | undefined;
        document.addEventListener(ev, (e) => (t0 ??= e.timeStamp), { capture: true, once: true });
        const mo = new MutationObserver(() => {
          if (t0 !== undefined && document.querySelector(sel)) {
            mo.disconnect();
            resolve(performance.now() - t0);
          }
        });
        mo.observe(document, { subtree: true, childList: true, attributes: true });
      });
    },
    [event, selector] as const,
  );
  await act();
  return page.evaluate(() => (window as unknown as { benchWait: Promise<number> }).benchWait);
}

interface RunTimes {
  open: number;
  map: number;
  compare: number;
  /** Reading both files whole in a worker, 8 MiB Blob reads one after another: what any in-page compare must pay. */
  blobRead: number;
}

/** Seconds a worker of the page takes to read `files` whole through Blob reads, as the engine reads them. */
async function blobReadTime(page: Page, files: string[]): Promise<number> {
  await page.evaluate(() => {
    const input = Object.assign(document.createElement('input'), { type: 'file', multiple: true, id: 'bench-read', hidden: true });
    document.body.append(input);
  });
  await page.setInputFiles('#bench-read', files);
  const ms = await page.evaluate(async () => {
    const picked = [...(document.getElementById('bench-read') as HTMLInputElement).files!];
    const src = `onmessage = async (e) => {
      const t0 = performance.now();
      for (const f of e.data) for (let o = 0; o < f.size; o += 8 << 20) await f.slice(o, o + (8 << 20)).arrayBuffer();
      postMessage(performance.now() - t0);
    }`;
    const worker = new Worker(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })));
    return new Promise<number>((resolve) => {
      worker.onmessage = (e) => {
        worker.terminate();
        resolve(e.data as number);
      };
      worker.postMessage(picked);
    });
  });
  return ms / 1000;
}

/** One fresh page: open both images, then the qcow2's Map, then compare it with the raw image. */
async function oneRun(browser: Browser, origin: string, qcow2: string, raw: string): Promise<RunTimes> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    const page = await context.newPage();
    await page.goto(origin + '/');
    // The engine's worker is up once it has reported its kernels.
    await page.waitForFunction(() => /Kernels: /.test(document.querySelector('[data-field="kernels"]')?.textContent ?? ''), undefined, { timeout: 30_000 });
    const open = await timed(page, 'change', '[data-field="virtual-size"]', () => page.setInputFiles('input[name="image-files"]', [qcow2, raw]));
    const map = await timed(page, 'click', '[data-field="map-canvas"][data-drawn]', () => page.getByRole('tab', { name: 'Map', exact: true }).click());
    await page.getByRole('tab', { name: 'Compare', exact: true }).click();
    await page.locator('select[name="compare-with"]').selectOption(path.basename(raw));
    // qemu-img compare stops at the first difference; so does the page without --all.
    await page.locator('input[name="all-ranges"]').setChecked(false);
    const compare = await timed(page, 'click', '[data-field="verdict"]', () => page.getByRole('button', { name: 'Compare', exact: true }).click());
    return { open: open / 1000, map: map / 1000, compare: compare / 1000, blobRead: await blobReadTime(page, [qcow2, raw]) };
  } finally {
    await context.close();
  }
}

/** A row with only the page's time and a bound in seconds. */
function within(op: string, seconds: number, bound: number): void {
  results.push({ op, vdisk_s: seconds, target_s: bound });
  const verdict = seconds < bound ? 'ok' : 'MISSED';
  console.log(`${op.padEnd(40)} ${seconds.toFixed(3).padStart(8)} ${''.padStart(8)} ${''.padStart(7)}  < ${bound.toFixed(3)} s ${verdict}`);
}

export async function browser(dir: string): Promise<void> {
  const { qcow2, raw } = benchImages(dir);
  // Loaded at run time rather than bundled: playwright-core is CommonJS with requires an ES module bundle cannot hold.
  const { chromium } = createRequire(import.meta.url)('playwright-core') as typeof import('playwright-core');
  const server = await serve(DIST);
  const chrome = await chromium.launch(CHROMIUM_LAUNCH);
  try {
    const runs: RunTimes[] = [];
    const qemu: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      runs.push(await oneRun(chrome, server.origin, qcow2, raw));
      qemu.push(time('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', qcow2, raw]));
    }
    within(`browser: open ${GIB} GiB qcow2 → info`, median(runs.map((r) => r.open)), 0.2);
    within(`browser: map ${GIB} GiB qcow2 → drawn`, median(runs.map((r) => r.map)), 0.5);
    const page = median(runs.map((r) => r.compare));
    const q = median(qemu);
    const row = { op: `browser: compare ${GIB} GiB qcow2 vs raw`, vdisk_s: page, qemu_s: q, ratio: page / q, target: 2 };
    results.push(row);
    const ok = row.ratio <= row.target ? 'ok' : 'MISSED';
    console.log(`${row.op.padEnd(40)} ${page.toFixed(3).padStart(8)} ${q.toFixed(3).padStart(8)} ${row.ratio.toFixed(2).padStart(7)}  <= ${row.target.toFixed(2)} ${ok}`);
    // The floor under any in-page compare: the browser hands file bytes over far slower than the page cache serves qemu-img.
    const read = median(runs.map((r) => r.blobRead));
    results.push({ op: `browser: Blob read of both files`, vdisk_s: read, qemu_s: q, ratio: read / q });
    console.log(`${'browser: Blob read of both files'.padEnd(40)} ${read.toFixed(3).padStart(8)} ${q.toFixed(3).padStart(8)} ${(read / q).toFixed(2).padStart(7)}  (reading alone)`);
  } finally {
    await chrome.close();
    await server.close();
  }
}
