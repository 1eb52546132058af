/**
 * Recent files as the page shows them: the handles of the image sets the
 * user opened (kept in IndexedDB by store.ts), newest first, and reopening
 * one, which asks the browser for permission to read it again.
 */
import { fromHandles, type PickedSet } from './picked-files.ts';
import { forgetFile, recentFiles, rememberFile, type RecentFile } from './store.ts';

/** Handles picked with an image beyond this many are not remembered with it. */
const MAX_COMPANIONS = 32;

/** Whether `handle` gives the file at `path` of a picked set: the file itself, or the folder it lies in. */
const holds = (handle: FileSystemHandle, path: string) => (handle.kind === 'file' ? path === handle.name : path.startsWith(`${handle.name}/`));

/** Read permission on a handle, asking the user if it lapsed (a new visit); false if refused. */
async function readable(handle: FileSystemHandle): Promise<boolean> {
  const mode = { mode: 'read' } as const;
  // Without the permission methods the handle is readable for as long as the browser keeps it.
  if (!handle.queryPermission || !handle.requestPermission) return true;
  if ((await handle.queryPermission(mode)) === 'granted') return true;
  return (await handle.requestPermission(mode)) === 'granted';
}

export class Recent {
  entries = $state.raw<RecentFile[]>([]);

  async refresh(): Promise<void> {
    this.entries = await recentFiles();
  }

  /** Remembers the set that `image` (a path among its files) was opened from; a set without handles is not remembered. */
  async remember(set: PickedSet, image: string): Promise<void> {
    const handle = set.handles.find((h) => holds(h, image));
    if (!handle) return;
    const companions = set.handles.filter((h) => h !== handle).slice(0, MAX_COMPANIONS);
    await rememberFile({ handle, image, companions, openedAt: Date.now() });
    await this.refresh();
  }

  async forget(entry: RecentFile): Promise<void> {
    await forgetFile(entry);
    await this.refresh();
  }

  /** The files of a remembered set, read again once the user allows it. */
  async reopen(entry: RecentFile): Promise<PickedSet> {
    const handles = [entry.handle, ...(entry.companions ?? [])];
    for (const h of handles) {
      if (!(await readable(h))) throw new Error(`Reading ${h.name} again was not allowed.`);
    }
    try {
      return { files: await fromHandles(handles), handles };
    } catch (e) {
      if (e instanceof DOMException && e.name === 'NotFoundError') throw new Error(`${entry.image} is no longer where it was opened from.`);
      throw e;
    }
  }
}
