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
 * folder the user picked (or just their name). A reference is looked up by
 * its path taken from the referring image, then by its bare name among files
 * whose bare name is unique: an image usually names its backing file by a
 * path from the machine it was made on.
 */
export class FileSetOpener implements Opener {
  private readonly byName = new Map<string, ByteSource | null>();

  constructor(private readonly files: Map<string, ByteSource>) {
    for (const [path, src] of files) {
      const name = baseName(path);
      // null marks a bare name that two files share: no guessing between them.
      this.byName.set(name, this.byName.has(name) && this.byName.get(name) !== src ? null : src);
    }
  }

  resolve(name: string, from: ByteSource): string {
    return combinePath(from.name, name);
  }

  /** The file at `path`, or the only file with its bare name. */
  find(path: string): ByteSource | undefined {
    const full = normalizePath(path);
    return this.files.get(full) ?? this.byName.get(baseName(full)) ?? undefined;
  }

  async open(name: string, from: ByteSource, kind: ReferenceKind): Promise<ByteSource> {
    const full = normalizePath(this.resolve(name, from));
    const found = this.find(full);
    if (!found) throw new BackingFileMissingError(name, full, kind);
    return found;
  }
}

const baseName = (path: string) => path.slice(path.lastIndexOf('/') + 1);

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
