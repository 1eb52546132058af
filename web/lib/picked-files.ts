/**
 * Turning what the user gave (a file input, a folder input, a drop) into
 * picked files with relative paths, so that an image's reference to
 * `base.qcow2` or `../base/base.qcow2` can be found among them.
 */
import type { PickedFile } from './engine-protocol.ts';

/** A dropped folder of this many files is cut short: images come in small sets. */
const MAX_FILES = 10_000;

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

/** The files and folders of a drop. Entries must be taken during the drop event, before any await. */
export function fromDrop(data: DataTransfer): Promise<PickedFile[]> {
  const entries = [...data.items]
    .filter((item) => item.kind === 'file')
    .map((item) => item.webkitGetAsEntry())
    .filter((e): e is FileSystemEntry => e !== null);
  if (entries.length === 0) return Promise.resolve(fromFileList(data.files));
  return (async () => {
    const out: PickedFile[] = [];
    for (const e of entries) await walk(e, out);
    return out;
  })();
}
