// The web app: Svelte 5 in web/, static assets and sample images in public/,
// built to dist/. The engine runs in a module worker (web/worker.ts). The
// PWA plugin writes the web app manifest and a service worker that precaches
// every file of the build (worker, WebAssembly kernels, samples included), so
// the app works offline after its first load.
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { VitePWA } from 'vite-plugin-pwa';

/** The extensions the installed app opens from the system's file manager. */
const IMAGE_EXTENSIONS = ['.qcow2', '.vmdk', '.vhd', '.vhdx', '.vdi', '.qed', '.img', '.raw'];

export default defineConfig({
  root: 'web',
  publicDir: '../public',
  plugins: [
    svelte(),
    VitePWA({
      // Registered from main.ts; an update waits for the user (a reload mid-convert would lose the work).
      injectRegister: false,
      registerType: 'prompt',
      manifest: {
        id: '/',
        name: 'vDisk Workbench',
        short_name: 'vDisk',
        description: 'Inspect, map, check, compare and convert virtual machine disk images in the browser. Nothing is uploaded.',
        start_url: '/',
        scope: '/',
        display: 'standalone',
        background_color: '#f6f7f9',
        theme_color: '#2f6fde',
        icons: [{ src: 'icons/app.svg', sizes: 'any', type: 'image/svg+xml', purpose: 'any' }],
        file_handlers: [{ action: '/', accept: { 'application/octet-stream': IMAGE_EXTENSIONS } }],
      },
      workbox: {
        globPatterns: ['**/*.{html,js,css,wasm,svg,png,webmanifest,qcow2,vmdk}'],
        navigateFallback: 'index.html',
        cleanupOutdatedCaches: true,
        // The first visit is controlled at once, so it works offline without a reload.
        clientsClaim: true,
      },
    }),
  ],
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    target: 'es2022',
    // Bundling the service worker takes the PWA plugin seconds after the bundle is written; that is expected, not worth a warning.
    rolldownOptions: { checks: { bundlerTimings: false } },
  },
  worker: { format: 'es' },
  server: { port: 5173 },
  preview: { port: 4173 },
});
