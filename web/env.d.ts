// Ambient types for the web app: Vite's asset imports (`?url`) and Svelte's runes.
/// <reference types="vite/client" />
/// <reference types="svelte" />
