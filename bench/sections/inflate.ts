/**
 * Decoding real qcow2 compressed clusters: the WebAssembly decoder against
 * fflate (the engine's fallback), pako, Node's zlib and DecompressionStream.
 * The clusters come from `qemu-img convert -c` of VDISK_BENCH_INFLATE_MIB MiB
 * (default 64) of guest data, alternating MiB of text (TypeScript's own
 * sources) and machine code (the node binary). Rates are decoded MB/s,
 * medians of RUNS passes over all clusters, by wall time and by CPU time.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { inflateSync } from 'fflate';
import { inflateRaw as pakoInflateRaw } from 'pako';
import { instantiateInflate } from '../../engine/kernels/inflate.ts';
import { openLayer } from '../../engine/image.ts';
import { MemorySource } from '../../engine/io/source.ts';
import { nodeOpener } from '../../cli/node-io.ts';
import { median, MiB, results, RUNS } from '../lib.ts';

const GUEST_MIB = Number(process.env.VDISK_BENCH_INFLATE_MIB ?? 64);
/** Streams decoded by DecompressionStream at once. */
const BATCH = 64;

interface Cluster {
  /** The stored bytes, to the end of the last sector, as the engine reads them. */
  input: Uint8Array;
  /** The deflate stream alone (DecompressionStream refuses bytes after the end). */
  stream: Uint8Array<ArrayBuffer>;
  size: number;
}

function guestData(): Buffer {
  const text = readFileSync('node_modules/typescript/lib/typescript.js');
  const code = readFileSync(process.execPath);
  const data = Buffer.alloc(GUEST_MIB * MiB);
  for (let m = 0; m < GUEST_MIB; m++) {
    const from = m % 2 === 0 ? text : code;
    const at = ((m >> 1) * 3 * MiB) % (from.length - MiB);
    from.copy(data, m * MiB, at, at + MiB);
  }
  return data;
}

/** Writes the guest data, compresses it with qemu-img and collects its compressed clusters through the engine. */
async function compressedClusters(dir: string): Promise<Cluster[]> {
  const raw = join(dir, 'inflate.raw');
  const img = join(dir, 'inflate.qcow2');
  writeFileSync(raw, guestData());
  execFileSync('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, img]);
  const layer = await openLayer(new MemorySource(img, readFileSync(img)), nodeOpener, 'qcow2');
  const clusters: Cluster[] = [];
  for (let off = 0; off < layer.size; ) {
    const m = await layer.getMapping(off, layer.size - off);
    if (m.kind === 'compressed') {
      const u = m.unit;
      const input = await u.source.read(u.hostOffset, Math.min(u.hostLength, u.source.size - u.hostOffset));
      // With `info`, zlib also reports how much input the stream used; Node's types leave that out.
      const { engine } = inflateRawSync(input, { info: true }) as unknown as { engine: { bytesWritten: number } };
      clusters.push({ input, stream: input.slice(0, engine.bytesWritten), size: u.size });
      off = u.guestOffset + u.size;
    } else {
      off += m.length;
    }
  }
  return clusters;
}

async function decompressionStream(c: Cluster): Promise<number> {
  const stream = new Blob([c.stream]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  return (await new Response(stream).arrayBuffer()).byteLength;
}

export async function inflate(dir: string): Promise<void> {
  const clusters = await compressedClusters(dir);
  const bytes = clusters.reduce((s, c) => s + c.size, 0);
  const packed = clusters.reduce((s, c) => s + c.stream.length, 0);
  console.log(`inflate: ${clusters.length} clusters, ${(bytes / MiB).toFixed(1)} MiB decoded from ${(packed / MiB).toFixed(1)} MiB`);
  const outs = clusters.map((c) => new Uint8Array(c.size));
  const simd = await instantiateInflate(readFileSync('build/wasm/inflate-simd.wasm'), 'wasm-simd');
  const scalar = await instantiateInflate(readFileSync('build/wasm/inflate-scalar.wasm'), 'wasm-scalar');
  const expected = clusters.map((c) => inflateRawSync(c.input).subarray(0, c.size));

  const decoders: [string, () => void | Promise<void>][] = [
    ['wasm-simd', () => clusters.forEach((c, i) => simd.inflateRaw(c.input, outs[i]!))],
    ['wasm-scalar', () => clusters.forEach((c, i) => scalar.inflateRaw(c.input, outs[i]!))],
    ['fflate', () => clusters.forEach((c, i) => inflateSync(c.input, { out: outs[i]! }))],
    ['pako', () => clusters.forEach((c) => pakoInflateRaw(c.input))],
    ['node zlib', () => clusters.forEach((c) => inflateRawSync(c.input))],
    [
      `DecompressionStream x${BATCH}`,
      async () => {
        for (let i = 0; i < clusters.length; i += BATCH) await Promise.all(clusters.slice(i, i + BATCH).map(decompressionStream));
      },
    ],
  ];
  // Every decoder that writes into `outs` must agree with zlib before it is timed.
  for (const [name, run] of decoders.slice(0, 3)) {
    outs.forEach((o) => o.fill(0));
    await run();
    if (outs.some((o, i) => Buffer.compare(o, expected[i]!) !== 0)) throw new Error(`inflate: ${name} decodes differently from zlib`);
  }

  // Rounds alternate the decoders, so that load from elsewhere on the machine
  // falls on all of them alike. Wall time is what a caller waits; CPU time
  // (all of this process's threads, so DecompressionStream's too) is the work.
  const wall = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  for (const [name, run] of decoders) await run();
  for (let r = 0; r < RUNS; r++) {
    for (const [name, run] of decoders) {
      const c = process.cpuUsage();
      const t = process.hrtime.bigint();
      await run();
      const wallS = Number(process.hrtime.bigint() - t) / 1e9;
      const used = process.cpuUsage(c);
      (wall.get(name) ?? wall.set(name, []).get(name)!).push(wallS);
      (cpu.get(name) ?? cpu.set(name, []).get(name)!).push((used.user + used.system) / 1e6);
    }
  }
  const mbs = (times: number[]) => bytes / median(times) / 1e6;
  console.log(`${'inflate qcow2 clusters'.padEnd(40)} ${'wall'.padStart(8)} ${'cpu'.padStart(8)}  (MB/s decoded)`);
  for (const [name] of decoders) {
    const op = `inflate qcow2 clusters (${name})`;
    const row = { op, mb_per_s: mbs(wall.get(name)!), cpu_mb_per_s: mbs(cpu.get(name)!) };
    results.push(row);
    console.log(`${op.padEnd(40)} ${row.mb_per_s.toFixed(1).padStart(8)} ${row.cpu_mb_per_s.toFixed(1).padStart(8)}`);
  }
  for (const [other] of decoders.slice(1)) {
    const op = `inflate wasm-simd / ${other}`;
    const row = {
      op,
      ratio: median(wall.get(other)!) / median(wall.get('wasm-simd')!),
      cpu_ratio: median(cpu.get(other)!) / median(cpu.get('wasm-simd')!),
    };
    results.push(row);
    console.log(`${op.padEnd(40)} ${row.ratio.toFixed(2).padStart(8)} ${row.cpu_ratio.toFixed(2).padStart(8)}  (x)`);
  }
}
