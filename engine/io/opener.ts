/**
 * The opener gate. An image names other files (backing files, data files,
 * extents); an untrusted image can name any path, so the engine never opens a
 * path itself. It asks the opener the caller injected: the CLI resolves names
 * relative to the image as qemu-img does, the browser looks among the files the
 * user picked or the folder the user granted.
 */
import { BackingFileMissingError, type ReferenceKind } from '../errors.ts';
import type { ByteSource } from './source.ts';

export interface Opener {
  /**
   * The name qemu-img reports as `full-backing-filename`: `name` taken
   * relative to the directory of `from`, unless it is absolute.
   */
  resolve(name: string, from: ByteSource): string;
  /** Opens the file `name` refers to; throws `BackingFileMissingError` when it is not available. */
  open(name: string, from: ByteSource, kind: ReferenceKind): Promise<ByteSource>;
}

/** qemu's path_combine: a relative name is taken from the directory of the referring file. */
export function combinePath(baseName: string, name: string): string {
  if (name.startsWith('/') || /^[a-z][a-z0-9+.-]*:/i.test(name)) return name;
  const slash = baseName.lastIndexOf('/');
  return slash < 0 ? name : baseName.slice(0, slash + 1) + name;
}

/**
 * An opener over a fixed set of files, keyed by their path relative to the
 * folder the user picked (or just their name). Used by the web app and tests.
 */
export class FileSetOpener implements Opener {
  constructor(private readonly files: Map<string, ByteSource>) {}

  resolve(name: string, from: ByteSource): string {
    return combinePath(from.name, name);
  }

  async open(name: string, from: ByteSource, kind: ReferenceKind): Promise<ByteSource> {
    const full = normalizePath(this.resolve(name, from));
    const found = this.files.get(full) ?? this.files.get(full.slice(full.lastIndexOf('/') + 1));
    if (!found) throw new BackingFileMissingError(name, full, kind);
    return found;
  }
}

/** Folds `a/./b/../c` into `a/c`, so two spellings of one path compare equal. */
export function normalizePath(path: string): string {
  const out: string[] = [];
  const absolute = path.startsWith('/');
  for (const part of path.split('/')) {
    if (part === '.' || part === '') continue;
    if (part === '..' && out.length > 0 && out[out.length - 1] !== '..') out.pop();
    else out.push(part);
  }
  return (absolute ? '/' : '') + out.join('/');
}
