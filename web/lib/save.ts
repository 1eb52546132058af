/**
 * The page's side of saving a conversion's output. Where the browser has
 * showSaveFilePicker, the user picks the file first and the engine's worker
 * writes it through the handle as the output is produced. Elsewhere the
 * worker writes an OPFS temporary, held under a Web Lock by this page, and
 * the page then offers the finished file as a download (the File the OPFS
 * gives is backed by the disk, never read whole into memory) and removes it
 * once the download has had time to read it. A cancelled or failed save is
 * cleaned up here, because Cancel kills the worker that was writing.
 */
import type { SaveTarget } from './engine-protocol.ts';
import { TEMP_PREFIX, tempLock } from '../worker/sinks.ts';
import { download } from './download.ts';

type SaveFilePicker = (opts: { suggestedName?: string; id?: string }) => Promise<FileSystemFileHandle>;

/** The File System Access save picker, where the browser has one. */
const savePicker = (): SaveFilePicker | undefined => (window as { showSaveFilePicker?: SaveFilePicker }).showSaveFilePicker?.bind(window);

export const canPickSaveFile = (): boolean => savePicker() !== undefined;

export interface PreparedSave {
  target: SaveTarget;
  /** The name the output is saved under. */
  name: string;
  /** How it is saved, for the page to say: into the picked file, or as a download. */
  via: 'file' | 'download';
  /** The output is complete: offers it to the user where that is still to do. */
  finish(): Promise<void>;
  /** The conversion failed or was cancelled: leaves nothing under the chosen name. */
  discard(): Promise<void>;
}

/** Holds a Web Lock until the returned release is called. */
function holdLock(name: string): Promise<() => void> {
  return new Promise((acquired) => {
    void navigator.locks.request(name, () => new Promise<void>((release) => acquired(release)));
  });
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs a removal until it succeeds or finds nothing to remove: a worker just
 * killed by Cancel may hold the file open (and locked) for a moment.
 */
async function removeSoon(remove: () => Promise<void>): Promise<void> {
  for (let attempt = 0; attempt < 40; attempt++) {
    try {
      await remove();
      return;
    } catch (e) {
      if (e instanceof DOMException && e.name === 'NotFoundError') return;
      await pause(100);
    }
  }
}

async function removeTemp(temp: string): Promise<void> {
  const dir = await navigator.storage.getDirectory();
  await removeSoon(() => dir.removeEntry(temp));
}

/** How long a finished temporary stays for its download to read it: a minute, plus time to copy it at a slow disk's pace. */
const keepFor = (bytes: number) => 60_000 + bytes / 20_000;

/** Leaves nothing under a picked file's name: removes it where the browser can, else empties it. */
async function removePicked(handle: FileSystemFileHandle): Promise<void> {
  const removable = handle as FileSystemFileHandle & { remove?: () => Promise<void> };
  await removeSoon(async () => {
    if (removable.remove) await removable.remove();
    else await (await handle.createWritable()).close();
  });
}

/**
 * Chooses where the output goes, named `suggested` to start with. Resolves
 * to undefined when the user closes the save picker without choosing.
 */
export async function prepareSave(suggested: string): Promise<PreparedSave | undefined> {
  const picker = savePicker();
  if (picker) {
    let handle: FileSystemFileHandle;
    try {
      handle = await picker({ suggestedName: suggested, id: 'vdisk-convert' });
    } catch (e) {
      if (e instanceof DOMException && e.name === 'AbortError') return undefined;
      throw e;
    }
    return { target: { kind: 'handle', handle }, name: handle.name, via: 'file', finish: async () => {}, discard: () => removePicked(handle) };
  }
  const temp = `${TEMP_PREFIX}${crypto.randomUUID()}.part`;
  // Held from before the worker creates the file until it is removed, so no other tab's worker takes it for stale.
  const release = await holdLock(tempLock(temp));
  const drop = () => removeTemp(temp).finally(release);
  return {
    target: { kind: 'opfs', temp, name: suggested },
    name: suggested,
    via: 'download',
    async finish() {
      const dir = await navigator.storage.getDirectory();
      const file = await (await dir.getFileHandle(temp)).getFile();
      download(file, suggested, keepFor(file.size));
      setTimeout(() => void drop(), keepFor(file.size));
    },
    discard: drop,
  };
}
