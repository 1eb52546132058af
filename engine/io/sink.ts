/**
 * Byte sinks: where converted images are written. A sink is written in place
 * (positioned writes), and publishes its result under the final name only on
 * `commit`; `abort` leaves nothing behind. The CLI writes a temporary file and
 * renames it; the browser writes a FileSystemWritableFileStream, which the
 * platform itself only swaps in on close.
 */
export interface ByteSink {
  readonly name: string;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Sets the final length (unwritten ranges read as zeros), then publishes the file. */
  commit(length: number): Promise<void>;
  /** Discards everything written so far. */
  abort(): Promise<void>;
}
