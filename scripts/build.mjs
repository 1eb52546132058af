// The build: AssemblyScript kernels to WebAssembly (SIMD and scalar builds),
// then the web app to dist/ with Vite, then the vdisk CLI bundle to
// dist/cli/vdisk.mjs with the kernels beside it in dist/wasm/.
// Usage: node scripts/build.mjs [asm|web|cli|bench]...   (default: asm, web, cli)
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, chmodSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { build as esbuild } from 'esbuild';

const steps = process.argv.slice(2);
const want = (s) => (steps.length === 0 && s !== 'bench') || steps.includes(s);
const bin = (name) => `node_modules/.bin/${name}`;
const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit' });

// asm/*.ts together make one module (the kernels sharing the engine's I/O
// arena); each asm/<name>/index.ts is a module of its own with its own memory.
// Every module is built twice: with SIMD and without; the kernels a third
// time, for shared memory (the CLI's).
const KERNELS = readdirSync('asm').filter((f) => f.endsWith('.ts')).map((f) => `asm/${f}`);
const OWN_MODULES = readdirSync('asm', { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(`asm/${d.name}/index.ts`))
  .map((d) => d.name);

if (want('asm')) {
  mkdirSync('build/wasm', { recursive: true });
  const base = ['--runtime', 'stub', '-O3', '--noAssert'];
  const both = (entries, name, extra) => {
    run(bin('asc'), [...entries, '-o', `build/wasm/${name}-simd.wasm`, ...base, ...extra, '--enable', 'simd']);
    run(bin('asc'), [...entries, '-o', `build/wasm/${name}-scalar.wasm`, ...base, ...extra, '--disable', 'simd']);
  };
  const imported = ['--importMemory', '--initialMemory', '1'];
  both(KERNELS, 'kernels', imported);
  // The CLI's kernels work on shared memory, which its write threads write output from in place.
  const shared = ['--enable', 'simd', '--enable', 'threads', '--sharedMemory', '--maximumMemory', '65536'];
  run(bin('asc'), [...KERNELS, '-o', 'build/wasm/kernels-shared.wasm', ...base, ...imported, ...shared]);
  for (const m of OWN_MODULES) both([`asm/${m}/index.ts`], m, []);
}

/** Every file below `dir`, as paths relative to it with forward slashes. */
const filesBelow = (dir, prefix = '') =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesBelow(`${dir}/${e.name}`, `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
  );

if (want('web')) {
  run(bin('vite'), ['build', '--logLevel', 'warn']);
  // The service worker keeps every file the build wrote; its version is their hash, so a new build replaces the cache.
  const files = filesBelow('dist').filter((f) => f !== 'sw.js' && !f.startsWith('cli/') && !f.startsWith('wasm/'));
  const hash = createHash('sha256');
  for (const f of files.sort()) hash.update(f).update(readFileSync(`dist/${f}`));
  await esbuild({
    entryPoints: ['web/service-worker.ts'],
    outfile: 'dist/sw.js',
    bundle: true,
    format: 'iife',
    target: 'es2022',
    minify: true,
    define: { PRECACHE: JSON.stringify(files), VERSION: JSON.stringify(hash.digest('hex').slice(0, 16)) },
    logLevel: 'warning',
  });
}

/** Bundles a Node entry point written in TypeScript into one ES module. */
const bundleNode = (entry, outfile, banner) =>
  esbuild({ entryPoints: [entry], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', banner, logLevel: 'warning' });

if (want('cli')) {
  await bundleNode('cli/vdisk.ts', 'dist/cli/vdisk.mjs', { js: '#!/usr/bin/env node' });
  chmodSync('dist/cli/vdisk.mjs', 0o755);
  mkdirSync('dist/wasm', { recursive: true });
  for (const f of readdirSync('build/wasm')) copyFileSync(`build/wasm/${f}`, `dist/wasm/${f}`);
}

if (want('bench')) await bundleNode('bench/run.ts', 'build/bench/run.mjs');
