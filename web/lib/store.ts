/**
 * What the app remembers between visits, in IndexedDB through idb-keyval:
 * settings (the last options used in each view), recent files (their
 * File System Access handles, reopened with the browser's permission
 * prompt) and saved reports. Three stores, so listing one never reads the
 * others. Storage that is unavailable (a private window that refuses it)
 * makes remembering a no-op, never an error in the view that asked.
 */
import { createStore, del, entries, get, set, type UseStore } from 'idb-keyval';

const DB = 'vdisk-workbench';

let stores: { settings: UseStore; recent: UseStore; reports: UseStore } | undefined;
function store(name: 'settings' | 'recent' | 'reports'): UseStore {
  // idb-keyval's createStore opens one database per call; each store gets a database of its own.
  stores ??= { settings: createStore(`${DB}-settings`, 'kv'), recent: createStore(`${DB}-recent`, 'kv'), reports: createStore(`${DB}-reports`, 'kv') };
  return stores[name];
}

/** Runs a storage step; when IndexedDB refuses, the fallback stands in. */
async function quietly<T>(step: () => Promise<T>, fallback: T): Promise<T> {
  try {
    return await step();
  } catch {
    return fallback;
  }
}

/** A setting by key (e.g. `convert.options`), or undefined if never saved. */
export const loadSetting = <T>(key: string): Promise<T | undefined> => quietly(() => get<T>(key, store('settings')), undefined);
export const saveSetting = (key: string, value: unknown): Promise<void> => quietly(() => set(key, value, store('settings')), undefined);

/** A file opened recently, as the File System Access API gave it. */
export interface RecentFile {
  /** The handle: a file, or the folder it was picked with. */
  handle: FileSystemHandle;
  /** The image to show among the files the handle gives (its path inside the folder). */
  image: string;
  /** The other files or folders picked with it (its backing files, extents), reopened with it. */
  companions?: FileSystemHandle[];
  openedAt: number;
}

const MAX_RECENT = 12;

export async function recentFiles(): Promise<RecentFile[]> {
  const all = await quietly(() => entries<string, RecentFile>(store('recent')), []);
  return all.map(([, r]) => r).sort((a, b) => b.openedAt - a.openedAt);
}

/** Remembers a handle (replacing an older entry for the same image) and forgets the oldest beyond the limit. */
export async function rememberFile(entry: RecentFile): Promise<void> {
  const key = `${entry.handle.kind}:${entry.handle.name}:${entry.image}`;
  await quietly(() => set(key, entry, store('recent')), undefined);
  const all = await quietly(() => entries<string, RecentFile>(store('recent')), []);
  all.sort((a, b) => b[1].openedAt - a[1].openedAt);
  for (const [k] of all.slice(MAX_RECENT)) await quietly(() => del(k, store('recent')), undefined);
}

export async function forgetFile(entry: RecentFile): Promise<void> {
  await quietly(() => del(`${entry.handle.kind}:${entry.handle.name}:${entry.image}`, store('recent')), undefined);
}

/** A report the user saved: its kind, a title, when, and its JSON. */
export interface SavedReport {
  id: string;
  kind: 'info' | 'compare';
  title: string;
  savedAt: number;
  data: unknown;
}

export async function savedReports(): Promise<SavedReport[]> {
  const all = await quietly(() => entries<string, SavedReport>(store('reports')), []);
  return all.map(([, r]) => r).sort((a, b) => b.savedAt - a.savedAt);
}

export const saveReport = (r: SavedReport): Promise<void> => quietly(() => set(r.id, r, store('reports')), undefined);
export const deleteReport = (id: string): Promise<void> => quietly(() => del(id, store('reports')), undefined);
