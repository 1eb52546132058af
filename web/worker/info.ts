/** Worker side of opening images: probing the picked files, and `qemu-img info --backing-chain`. */
import { VDiskError } from '../../engine/errors.ts';
import { normalizePath } from '../../engine/io/opener.ts';
import type { ByteSource } from '../../engine/io/source.ts';
import { humanInfo } from '../../engine/ops/info.ts';
import { toQemuJson } from '../../engine/format/qemu-json.ts';
import { kernels } from '../../engine/kernels/index.ts';
import type { Candidate, InfoOutcome, InfoText, LayerReport, PickedFile } from '../lib/engine-protocol.ts';
import { engineOver, failureOf, ready, shellWordOf } from './common.ts';

export interface InfoOps {
  /** Which zero-detection kernels the engine runs: `wasm-simd`, `wasm-scalar` or `typescript`. */
  kernels(): Promise<string>;
  /** Probes every picked file, and marks the ones another picked image uses as its backing file. */
  candidates(files: PickedFile[]): Promise<Candidate[]>;
  /** `qemu-img info --backing-chain` of the picked file at `name`, looking for its backing files among `files`. */
  info(files: PickedFile[], name: string, opts?: { format?: string }): Promise<InfoOutcome>;
}

/** Probing a whole folder of unrelated files would be slow for nothing; images come in small sets. */
const MAX_CANDIDATES = 256;

function infoText(name: string, layers: LayerReport[], chain: boolean): InfoText {
  const images = layers.map((l) => l.info);
  return {
    command: `qemu-img info${chain ? ' --backing-chain' : ''} ${shellWordOf(name)}`,
    human: layers.map((l) => humanInfo(l.info, l.snapshots)).join('\n'),
    json: toQemuJson(chain ? images : images[0]!),
  };
}

/** An outcome for a chain that stopped at `e`, below `layers`. */
function failure(e: VDiskError, layers: LayerReport[], name: string): InfoOutcome {
  // A missing backing file is named by the lowest layer that opened; a
  // missing data file or extent by the image that could not open without it.
  const lowest = layers.length > 0 ? layers[layers.length - 1]!.info.filename : undefined;
  const error = failureOf(e);
  const neededBy = error.missing?.kind === 'backing file' && lowest !== undefined ? lowest : e.file;
  return {
    ok: false,
    layers,
    text: layers.length > 0 ? infoText(name, layers.slice(0, 1), false) : undefined,
    missing: error.missing && { ...error.missing, neededBy },
    error: { file: e.file, message: e.message },
  };
}

export const infoOps: InfoOps = {
  async kernels() {
    await ready;
    return kernels().name;
  },

  async candidates(files) {
    const { api, ws } = await engineOver(files);
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

  async info(files, name, opts = {}) {
    const { api } = await engineOver(files);
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
