// The web app: Svelte 5 in web/, static assets and sample images in public/,
// built to dist/. The engine runs in a module worker (web/worker.ts). The
// service worker that keeps the app working offline (web/service-worker.ts)
// is built after this, by scripts/build.mjs, because it lists the files this
// build wrote.
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  root: 'web',
  publicDir: '../public',
  plugins: [svelte()],
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    target: 'es2022',
  },
  worker: { format: 'es' },
  server: { port: 5173 },
  preview: { port: 4173 },
});
