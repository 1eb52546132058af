/**
 * The engine's worker: the only place the web app runs the engine. It wraps
 * the picked files as byte sources (read by range, never loaded whole), gives
 * the engine an opener that looks only among them, and exposes the facade in
 * engine-protocol.ts through Comlink.
 */
import { expose } from 'comlink';
// Kept as files of their own (not inlined as data: URLs) so a strict connect-src still lets the worker fetch them.
import simdUrl from '../build/wasm/kernels-simd.wasm?url&no-inline';
import scalarUrl from '../build/wasm/kernels-scalar.wasm?url&no-inline';
import inflateSimdUrl from '../build/wasm/inflate-simd.wasm?url&no-inline';
import inflateScalarUrl from '../build/wasm/inflate-scalar.wasm?url&no-inline';
import { EngineApi } from '../engine/api.ts';
import { BackingChainError, BackingFileMissingError, OpenError, VDiskError } from '../engine/errors.ts';
import { normalizePath } from '../engine/io/opener.ts';
import type { ByteSource } from '../engine/io/source.ts';
import { fileSetWorkspace } from '../engine/io/file-set.ts';
import { humanInfo } from '../engine/ops/info.ts';
import { toQemuJson } from '../engine/format/qemu-json.ts';
import { kernels, loadWasmKernels } from '../engine/kernels/index.ts';
import { loadWasmInflate } from '../engine/kernels/inflate.ts';
import type { Candidate, EngineWorker, InfoOutcome, InfoText, LayerReport, MissingFile, PickedFile } from './lib/engine-protocol.ts';

/** Probing a whole folder of unrelated files would be slow for nothing; images come in small sets. */
const MAX_CANDIDATES = 256;

async function fetchBytes(url: string): Promise<ArrayBuffer> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.arrayBuffer();
}

// The TypeScript kernels stay active if the WebAssembly ones cannot be loaded, and fflate if the decoder cannot.
const ready: Promise<unknown> = Promise.all([
  Promise.all([fetchBytes(simdUrl), fetchBytes(scalarUrl)])
    .then(([simd, scalar]) => loadWasmKernels(simd, scalar))
    .catch(() => undefined),
  Promise.all([fetchBytes(inflateSimdUrl), fetchBytes(inflateScalarUrl)])
    .then(([simd, scalar]) => loadWasmInflate(simd, scalar))
    .catch(() => undefined),
]);

/** A file name as a shell command line would need it. */
const shellWord = (s: string) => (/^[\w./+@:-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

function infoText(name: string, layers: LayerReport[], chain: boolean): InfoText {
  const images = layers.map((l) => l.info);
  return {
    command: `qemu-img info${chain ? ' --backing-chain' : ''} ${shellWord(name)}`,
    human: layers.map((l) => humanInfo(l.info, l.snapshots)).join('\n'),
    json: toQemuJson(chain ? images : images[0]!),
  };
}

/** The first file-is-missing error inside the wrappers the engine puts around it. */
function missingCause(e: unknown): BackingFileMissingError | undefined {
  for (let cur = e; cur instanceof VDiskError; ) {
    if (cur instanceof BackingFileMissingError) return cur;
    cur = cur instanceof OpenError || cur instanceof BackingChainError ? cur.inner : undefined;
  }
  return undefined;
}

const facade: EngineWorker = {
  async kernels() {
    await ready;
    return kernels().name;
  },

  async candidates(files) {
    await ready;
    const ws = fileSetWorkspace(files);
    const api = new EngineApi(ws);
    const referenced = new Set<ByteSource>();
    const out: Candidate[] = [];
    for (const f of files.slice(0, MAX_CANDIDATES)) {
      const path = normalizePath(f.path);
      try {
        const im = (await api.info({ name: path })).images[0]!;
        const backing = im['backing-filename'];
        if (backing !== undefined) {
          // The same lookup the engine does when it opens the chain.
          const from = await ws.open(path);
          const target = await ws.opener.open(backing, from, 'backing file').catch(() => undefined);
          if (target && target !== from) referenced.add(target);
        }
        out.push({ path, format: im.format, referenced: false });
      } catch {
        // Not an image the engine can open: listed without a format. If nothing else opens, info on it says why.
        out.push({ path, referenced: false });
      }
    }
    for (const c of out) c.referenced = referenced.has(ws.sources.get(c.path)!);
    return out;
  },

  async info(files, name, opts = {}): Promise<InfoOutcome> {
    await ready;
    const api = new EngineApi(fileSetWorkspace(files));
    try {
      const r = await api.info({ name, format: opts.format, backingChain: true, partial: true });
      const layers = r.images.map((info, i): LayerReport => ({ info, snapshots: r.snapshots[i]! }));
      if (!r.error) return { ok: true, layers, text: infoText(name, layers, true) };
      return failure(r.error, layers, name);
    } catch (e) {
      if (e instanceof VDiskError) return failure(e, [], name);
      throw e;
    }
  },
};

/** An outcome for a chain that stopped at `e`, below `layers`. */
function failure(e: VDiskError, layers: LayerReport[], name: string): InfoOutcome {
  const cause = missingCause(e);
  let missing: MissingFile | undefined;
  if (cause) {
    // A missing backing file is named by the lowest layer that opened; a
    // missing data file or extent by the image that could not open without it.
    const neededBy = cause.kind === 'backing file' && layers.length > 0 ? layers[layers.length - 1]!.info.filename : e.file;
    missing = { requested: cause.requested, path: cause.path, kind: cause.kind, neededBy };
  }
  return {
    ok: false,
    layers,
    text: layers.length > 0 ? infoText(name, layers.slice(0, 1), false) : undefined,
    missing,
    error: { file: e.file, message: e.message },
  };
}

expose(facade);
