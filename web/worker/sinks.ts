/**
 * Where the browser writes a converted image, as the engine's ByteSink:
 * - a file the user picked with showSaveFilePicker, through its writable
 *   stream (the browser writes a swap file and puts it in place only on
 *   close, so an aborted or killed write leaves the picked file untouched);
 * - a temporary file in the origin-private file system (OPFS), written with a
 *   sync access handle, that the page then offers as a download.
 * They live in web/, not engine/, because they are the platform's I/O, as the
 * CLI's NodeFileSink lives in cli/; and here the file-system types are the
 * ones the web app type-checks against (the DOM library has no sync access
 * handle, so its small interface is declared below).
 */
import { VDiskError } from '../../engine/errors.ts';
import type { ByteSink } from '../../engine/io/sink.ts';

/** OPFS temporaries of conversions start with this; anything else there is not ours. */
export const TEMP_PREFIX = 'vdisk-save-';

/** The Web Lock a temporary is held under while it is written or downloaded; one nobody holds is stale. */
export const tempLock = (temp: string): string => `vdisk-opfs:${temp}`;

/** A storage failure as an engine error, so the page shows it like any other. */
const writeError = (name: string, what: string, e: unknown) =>
  new VDiskError(name, `Could not ${what} the output: ${e instanceof Error ? e.message : String(e)}`);

/** Writes in a picked file's stream cross to the browser process one message each; contiguous ones go together up to this size. */
const COALESCE = 4 * 1024 * 1024;

export class WritableSink implements ByteSink {
  #pending = new Uint8Array(COALESCE);
  #pendingAt = 0;
  #pendingLen = 0;

  private constructor(
    readonly name: string,
    private readonly stream: FileSystemWritableFileStream,
  ) {}

  static async open(handle: FileSystemFileHandle): Promise<WritableSink> {
    try {
      return new WritableSink(handle.name, await handle.createWritable({ keepExistingData: false }));
    } catch (e) {
      throw writeError(handle.name, 'create', e);
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const follows = this.#pendingLen > 0 && offset === this.#pendingAt + this.#pendingLen;
    if (follows && this.#pendingLen + data.length <= COALESCE) {
      this.#pending.set(data, this.#pendingLen);
      this.#pendingLen += data.length;
      return;
    }
    await this.#flush();
    if (data.length >= COALESCE) return this.#put(offset, data);
    this.#pending.set(data);
    this.#pendingAt = offset;
    this.#pendingLen = data.length;
  }

  async commit(length: number): Promise<void> {
    await this.#flush();
    try {
      await this.stream.write({ type: 'truncate', size: length });
      await this.stream.close();
    } catch (e) {
      throw writeError(this.name, 'save', e);
    }
  }

  async abort(): Promise<void> {
    await this.stream.abort().catch(() => undefined);
  }

  async #flush(): Promise<void> {
    if (this.#pendingLen === 0) return;
    const len = this.#pendingLen;
    this.#pendingLen = 0;
    await this.#put(this.#pendingAt, this.#pending.subarray(0, len));
  }

  async #put(position: number, data: Uint8Array): Promise<void> {
    try {
      // The stream copies the bytes before its promise settles; `data` may be a view of reused memory.
      await this.stream.write({ type: 'write', position, data: data as Uint8Array<ArrayBuffer> });
    } catch (e) {
      throw writeError(this.name, 'write', e);
    }
  }
}

/** The part of a sync access handle the sink uses (worker-only, so absent from the DOM library). */
interface SyncAccessHandle {
  write(data: Uint8Array, opts: { at: number }): number;
  truncate(size: number): void;
  flush(): void;
  close(): void;
}

export class OpfsSink implements ByteSink {
  private constructor(
    readonly name: string,
    private readonly dir: FileSystemDirectoryHandle,
    private readonly temp: string,
    private readonly handle: SyncAccessHandle,
  ) {}

  /** Creates `temp` in the OPFS root; `name` is the name the download will have (writers record it in the image). */
  static async create(temp: string, name: string): Promise<OpfsSink> {
    if (!temp.startsWith(TEMP_PREFIX)) throw new VDiskError(name, `Not a temporary name: ${temp}`);
    try {
      const dir = await navigator.storage.getDirectory();
      const file = (await dir.getFileHandle(temp, { create: true })) as FileSystemFileHandle & { createSyncAccessHandle(): Promise<SyncAccessHandle> };
      return new OpfsSink(name, dir, temp, await file.createSyncAccessHandle());
    } catch (e) {
      throw writeError(name, 'create', e);
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    try {
      for (let done = 0; done < data.length; ) done += this.handle.write(data.subarray(done), { at: offset + done });
    } catch (e) {
      throw writeError(this.name, 'write', e);
    }
  }

  async commit(length: number): Promise<void> {
    try {
      this.handle.truncate(length);
      this.handle.flush();
      this.handle.close();
    } catch (e) {
      throw writeError(this.name, 'save', e);
    }
  }

  async abort(): Promise<void> {
    try {
      this.handle.close();
    } catch {
      // Already closed by a commit that failed late; removing is what matters.
    }
    await this.dir.removeEntry(this.temp).catch(() => undefined);
  }
}

/** Names in an OPFS folder (its async iteration is in a DOM library the web app does not load). */
export async function entryNames(dir: FileSystemDirectoryHandle): Promise<string[]> {
  const names: string[] = [];
  for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(name);
  return names;
}

/**
 * Removes the temporaries of conversions that no page holds any more (a tab
 * closed mid-way, a worker killed by Cancel). A temporary still being written
 * or downloaded is held under its lock by the page that started it.
 */
export async function removeStaleTemporaries(): Promise<void> {
  const dir = await navigator.storage.getDirectory();
  for (const name of await entryNames(dir)) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    await navigator.locks.request(tempLock(name), { ifAvailable: true }, async (lock) => {
      if (lock) await dir.removeEntry(name).catch(() => undefined);
    });
  }
}
