/**
 * Turning what the user gave (the File System Access pickers, a file or
 * folder input, a drop, files the installed app was launched with) into
 * picked files with relative paths, so that an image's reference to
 * `base.qcow2` or `../base/base.qcow2` can be found among them. Where the
 * browser gives File System Access handles, they are kept with the files so
 * the set can be remembered and reopened later.
 */
import type { PickedFile } from './engine-protocol.ts';

/** A folder of this many files is cut short: images come in small sets. */
const MAX_FILES = 10_000;

/** What the user gave: the files, and the handles they came from (none where the browser gives none). */
export interface PickedSet {
  files: PickedFile[];
  /** One per file picked, or the folder's own handle: what reopens the same files. */
  handles: FileSystemHandle[];
}

/** Feature tests: the pickers exist in Chromium-based browsers only; elsewhere the file inputs stand in. */
export const canPickFiles = (): boolean => typeof window.showOpenFilePicker === 'function';
export const canPickFolder = (): boolean => typeof window.showDirectoryPicker === 'function';

/** The pickers remember their last folder under this id. */
const PICKER_ID = 'vdisk-images';

/** The user closed the picker without choosing anything. */
const dismissed = (e: unknown) => e instanceof DOMException && e.name === 'AbortError';

/** Files from the file picker, or undefined if the user closed it. */
export async function pickFiles(): Promise<PickedSet | undefined> {
  try {
    const handles = await window.showOpenFilePicker!({ multiple: true, id: PICKER_ID });
    return { files: await fromHandles(handles), handles };
  } catch (e) {
    if (dismissed(e)) return undefined;
    throw e;
  }
}

/** A folder from the folder picker (an image with its backing files or extents), or undefined if the user closed it. */
export async function pickFolder(): Promise<PickedSet | undefined> {
  try {
    const folder = await window.showDirectoryPicker!({ id: PICKER_ID, mode: 'read' });
    return { files: await fromHandles([folder]), handles: [folder] };
  } catch (e) {
    if (dismissed(e)) return undefined;
    throw e;
  }
}

async function walkHandle(handle: FileSystemHandle, prefix: string, out: PickedFile[]): Promise<void> {
  if (out.length >= MAX_FILES) return;
  if (handle.kind === 'file') {
    out.push({ path: prefix + handle.name, blob: await (handle as FileSystemFileHandle).getFile() });
    return;
  }
  for await (const child of (handle as FileSystemDirectoryHandle).values()) {
    await walkHandle(child, `${prefix}${handle.name}/`, out);
    if (out.length >= MAX_FILES) return;
  }
}

/** The files under some handles: a file by its name, a folder's files by their path under the folder's name, as a folder input names them. */
export async function fromHandles(handles: readonly FileSystemHandle[]): Promise<PickedFile[]> {
  const out: PickedFile[] = [];
  for (const h of handles) await walkHandle(h, '', out);
  return out;
}

export function fromFileList(list: FileList | readonly File[]): PickedFile[] {
  return [...list].map((file) => ({ path: file.webkitRelativePath || file.name, blob: file }));
}

function fileOf(entry: FileSystemFileEntry): Promise<File> {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

function readBatch(reader: FileSystemDirectoryReader): Promise<FileSystemEntry[]> {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

async function walk(entry: FileSystemEntry, out: PickedFile[]): Promise<void> {
  if (out.length >= MAX_FILES) return;
  if (entry.isFile) {
    // fullPath is "/folder/name" from the drop's root, as webkitRelativePath is "folder/name".
    out.push({ path: entry.fullPath.replace(/^\/+/, ''), blob: await fileOf(entry as FileSystemFileEntry) });
  } else if (entry.isDirectory) {
    const reader = (entry as FileSystemDirectoryEntry).createReader();
    // readEntries returns a folder in batches until it returns none.
    for (let batch = await readBatch(reader); batch.length > 0; batch = await readBatch(reader)) {
      for (const child of batch) await walk(child, out);
    }
  }
}

/** Handles of a drop where the browser gives them; a drop without them is still opened, just not remembered. */
async function dropHandles(pending: (Promise<FileSystemHandle | null> | undefined)[]): Promise<FileSystemHandle[]> {
  if (pending.some((p) => p === undefined)) return [];
  const handles = await Promise.all(pending).catch(() => []);
  // A drop the page made itself gives no handles (null, or nothing at all in some versions).
  return handles.every((h) => h instanceof FileSystemHandle) ? (handles as FileSystemHandle[]) : [];
}

/** The files and folders of a drop. Entries and handles must be taken during the drop event, before any await. */
export function fromDrop(data: DataTransfer): Promise<PickedSet> {
  const items = [...data.items].filter((item) => item.kind === 'file');
  const pending = items.map((item) => item.getAsFileSystemHandle?.());
  const entries = items.map((item) => item.webkitGetAsEntry()).filter((e): e is FileSystemEntry => e !== null);
  const handles = dropHandles(pending);
  if (entries.length === 0) {
    const files = fromFileList(data.files);
    return handles.then((h) => ({ files, handles: h }));
  }
  return (async () => {
    const files: PickedFile[] = [];
    for (const e of entries) await walk(e, files);
    return { files, handles: await handles };
  })();
}

/** Files the installed app was launched with from the system's file manager, where the browser has a launch queue. */
export function onLaunch(open: (set: PickedSet) => void, fail: (e: unknown) => void): void {
  window.launchQueue?.setConsumer((params) => {
    const handles = params.files.filter((h) => h.kind === 'file');
    if (handles.length > 0) fromHandles(handles).then((files) => open({ files, handles }), fail);
  });
}
