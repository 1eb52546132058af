/**
 * What every worker operation shares: the kernels being loaded, a workspace
 * over the picked files, and engine errors turned into values (a thrown error
 * loses its fields, like the missing file's name, on its way to the page).
 */
// Kept as files of their own (not inlined as data: URLs) so a strict connect-src still lets the worker fetch them.
import simdUrl from '../../build/wasm/kernels-simd.wasm?url&no-inline';
import scalarUrl from '../../build/wasm/kernels-scalar.wasm?url&no-inline';
import inflateSimdUrl from '../../build/wasm/inflate-simd.wasm?url&no-inline';
import inflateScalarUrl from '../../build/wasm/inflate-scalar.wasm?url&no-inline';
import { releaseProxy, type ProxyMethods } from 'comlink';
import { EngineApi } from '../../engine/api.ts';
import { BackingChainError, BackingFileMissingError, OpenError, VDiskError } from '../../engine/errors.ts';
import { fileSetWorkspace, type FileSetWorkspace, type PickedFile } from '../../engine/io/file-set.ts';
import { loadWasmKernels } from '../../engine/kernels/index.ts';
import { loadWasmInflate } from '../../engine/kernels/inflate.ts';
import type { EngineFailure, MissingFile, Outcome, Progress } from '../lib/engine-protocol.ts';

async function fetchBytes(url: string): Promise<ArrayBuffer> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.arrayBuffer();
}

/** Resolves once the kernels are loaded; the TypeScript kernels stay active if the WebAssembly ones cannot be, and fflate if the decoder cannot. */
export const ready: Promise<unknown> = Promise.all([
  Promise.all([fetchBytes(simdUrl), fetchBytes(scalarUrl)])
    .then(([simd, scalar]) => loadWasmKernels(simd, scalar))
    .catch(() => undefined),
  Promise.all([fetchBytes(inflateSimdUrl), fetchBytes(inflateScalarUrl)])
    .then(([simd, scalar]) => loadWasmInflate(simd, scalar))
    .catch(() => undefined),
]);

/** The engine over the picked files, once the kernels are ready. */
export async function engineOver(files: readonly PickedFile[]): Promise<{ api: EngineApi; ws: FileSetWorkspace }> {
  await ready;
  const ws = fileSetWorkspace(files);
  return { api: new EngineApi(ws), ws };
}

/** The first file-is-missing error inside the wrappers the engine puts around it. */
export function missingCause(e: unknown): BackingFileMissingError | undefined {
  for (let cur = e; cur instanceof VDiskError; ) {
    if (cur instanceof BackingFileMissingError) return cur;
    cur = cur instanceof OpenError || cur instanceof BackingChainError ? cur.inner : undefined;
  }
  return undefined;
}

/** An engine error as the page shows it; a missing referenced file is named by `neededBy`. */
export function failureOf(e: VDiskError, neededBy = e.file): EngineFailure {
  const cause = missingCause(e);
  const missing: MissingFile | undefined = cause && { requested: cause.requested, path: cause.path, kind: cause.kind, neededBy };
  return { file: e.file, message: e.message, missing };
}

/** Runs an engine step; engine errors come back as a failed outcome, anything else is a bug and is thrown. */
export async function attempt<T>(step: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await step() };
  } catch (e) {
    if (e instanceof VDiskError) return { ok: false, error: failureOf(e) };
    throw e;
  }
}

/** Reports progress to the page at most every 100 ms (each report is a message), and always the last one. */
export function throttled(report: ((p: Progress) => void) | undefined): ((p: Progress) => void) | undefined {
  if (!report) return undefined;
  let last = 0;
  return (p) => {
    const now = performance.now();
    if (p.done < p.total && now - last < 100) return;
    last = now;
    report({ done: p.done, total: p.total });
  };
}

/**
 * Runs `step` with the page's progress callback (throttled), then releases
 * that callback: it crossed as a Comlink proxy, a message port each, and only
 * the holder of the proxy can close it, so ports do not pile up run after run.
 */
export async function withProgress<T>(onProgress: ((p: Progress) => void) | undefined, step: (report: ((p: Progress) => void) | undefined) => Promise<T>): Promise<T> {
  try {
    return await step(throttled(onProgress));
  } finally {
    // Called directly (not through Comlink) the callback has no release.
    (onProgress as Partial<ProxyMethods> | undefined)?.[releaseProxy]?.();
  }
}

/** A file name as a shell command line would need it, for the qemu-img command a result corresponds to. */
export const shellWordOf = (s: string) => (/^[\w./+@:-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
