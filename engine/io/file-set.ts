/**
 * A workspace over files the user picked or dropped, each known by its path
 * relative to the folder it came from (or its bare name). Images and the
 * files they refer to are found only among them.
 */
import { BackingFileMissingError } from '../errors.ts';
import type { Workspace } from '../api.ts';
import { FileSetOpener, normalizePath } from './opener.ts';
import { BlobSource, type ByteSource } from './source.ts';

export interface PickedFile {
  path: string;
  blob: Blob;
}

export interface FileSetWorkspace extends Workspace {
  readonly opener: FileSetOpener;
  /** The picked files as sources, by normalised path. */
  readonly sources: ReadonlyMap<string, ByteSource>;
}

export function fileSetWorkspace(files: readonly PickedFile[]): FileSetWorkspace {
  const sources = new Map<string, ByteSource>();
  for (const f of files) {
    const path = normalizePath(f.path);
    sources.set(path, new BlobSource(path, f.blob));
  }
  const opener = new FileSetOpener(sources);
  return {
    sources,
    opener,
    async open(name) {
      const found = opener.find(name);
      if (!found) throw new BackingFileMissingError(name, normalizePath(name), 'image', 'not among the picked files');
      return found;
    },
  };
}
