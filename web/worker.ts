/**
 * The engine's worker: the only place the web app runs the engine. Each
 * operation lives in a module of its own under worker/; this entry joins
 * them into the one facade the page reaches through Comlink. The page never
 * waits on a stuck operation: it terminates this worker and starts another.
 */
import { expose } from 'comlink';
import type { EngineWorker } from './lib/engine-protocol.ts';
import { infoOps } from './worker/info.ts';
import { mapOps } from './worker/map.ts';
import { checkOps } from './worker/check.ts';
import { compareOps } from './worker/compare.ts';
import { measureOps } from './worker/measure.ts';
import { convertOps } from './worker/convert.ts';

const facade: EngineWorker = { ...infoOps, ...mapOps, ...checkOps, ...compareOps, ...measureOps, ...convertOps };

expose(facade);
