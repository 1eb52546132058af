/**
 * A thread that makes one output file's writes, one after another, from a
 * ring of pieces shared with the caller.
 *
 * Why a thread: a file takes one buffered write at a time (the kernel locks
 * it), so a conversion writes no faster than its writes follow each other.
 * Through Node's own pool every write waits for this thread's event loop
 * before the next can start, two wake-ups between writes that on a virtual
 * machine cost about a millisecond each time: 2 GiB in 2 MiB writes took
 * 3.3 s one after another, 2.1 s from a loop of synchronous writes (measured
 * here). Two writes at once from the pool are no answer: the second spins on
 * the file's lock, taking a core from the reads.
 *
 * The caller copies each piece into a free slot and goes on; the thread
 * writes the slots in order, so writes to the same bytes land in the order
 * they were made. The caller waits only when the ring is full (then until it
 * is half empty) and before the file is truncated, closed or given up.
 *
 * Data in the kernels' memory, when it is shared (the CLI's I/O buffers), is
 * written from where it is, but for its last piece: the caller waits until
 * the rest is written, and the thread has the copied piece to write while the
 * caller comes back with more. The copies had cost 0.6 s of CPU time on a
 * 4 GiB raw → qcow2 (2 GiB written), on two cores shared with the reads.
 */
import { Worker } from 'node:worker_threads';

/**
 * The most one write call hands the kernel: 2 MiB, qemu-img's request size.
 * Linux sizes page-cache folios by the write, and on a virtual machine that
 * returns free memory to its host, large folios come from memory the host has
 * taken back and must fault in again: a 4 GiB raw → qcow2 took 6.4-7.4 s with
 * its 2 GiB of data written 8 MiB at a time, 2.3-4.5 s in 2 MiB pieces, as
 * qemu-img writes it (measured here, alternating runs).
 */
export const WRITE_PIECE = 2 * 1024 * 1024;
const SLOTS = 8;

/** Words of the control array. */
const HEAD = 0; // pieces handed over
const TAIL = 1; // pieces written
const STOP = 2; // set: write nothing more and end
const FAILED = 3; // set: a write failed (its error follows as a message)
const TO_THREAD = 4; // changed after every change of HEAD or STOP, for the thread to sleep on
const TO_CALLER = 5; // changed after every change of TAIL or FAILED, for the caller to wait on

// Plain CommonJS, run as an eval worker. Each side reads the word it sleeps on before looking at
// the others, and sleeps only while it still holds that value, so no change can slip past.
const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
const { writeSync } = require('node:fs');
const { fd, control, slots, descriptors, slotBytes, shared } = workerData;
const ctl = new Int32Array(control);
const desc = new Float64Array(descriptors);
const bytes = new Uint8Array(slots);
const memory = shared && new Uint8Array(shared);
const count = desc.length / 3;
(function loop() {
  for (let tail = 0; ; ) {
    const seen = Atomics.load(ctl, ${TO_THREAD});
    if (Atomics.load(ctl, ${STOP}) !== 0) return;
    if (Atomics.load(ctl, ${HEAD}) === tail) {
      Atomics.wait(ctl, ${TO_THREAD}, seen);
      continue;
    }
    const slot = tail % count;
    const offset = desc[3 * slot];
    const length = desc[3 * slot + 1];
    const inShared = desc[3 * slot + 2];
    const [from, at] = inShared >= 0 ? [memory, inShared] : [bytes, slot * slotBytes];
    let done = 0;
    try {
      while (done < length) done += writeSync(fd, from, at + done, length - done, offset + done);
    } catch (e) {
      parentPort.postMessage({ offset: offset + done, code: e.code, message: e.message });
      Atomics.store(ctl, ${FAILED}, 1);
      Atomics.add(ctl, ${TO_CALLER}, 1);
      Atomics.notify(ctl, ${TO_CALLER});
      return;
    }
    Atomics.store(ctl, ${TAIL}, ++tail);
    Atomics.add(ctl, ${TO_CALLER}, 1);
    Atomics.notify(ctl, ${TO_CALLER});
  }
})();
`;

/** A failed write: where in the file, and the system's error. */
export class WriteFailure {
  constructor(
    readonly offset: number,
    readonly error: Error,
  ) {}
}

// Atomics.waitAsync is in Node 16 and later; TypeScript's es2022 library does not declare it.
type WaitAsync = (array: Int32Array, index: number, value: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

export class WriteThread {
  private readonly control = new Int32Array(new SharedArrayBuffer(24));
  private readonly slots = new Uint8Array(new SharedArrayBuffer(SLOTS * WRITE_PIECE));
  /** Per slot: file offset, length, and where in `shared` the piece is (-1: in the slot). */
  private readonly descriptors = new Float64Array(new SharedArrayBuffer(SLOTS * 24));
  private readonly worker: Worker;
  private readonly ended: Promise<void>;
  private readonly failed: Promise<WriteFailure>;
  private head = 0;

  /** `shared`: memory whose pieces are written where they are, without a copy into a slot. */
  constructor(
    fd: number,
    private readonly shared?: SharedArrayBuffer,
  ) {
    this.worker = new Worker(WORKER, {
      eval: true,
      workerData: { fd, control: this.control.buffer, slots: this.slots.buffer, descriptors: this.descriptors.buffer, slotBytes: WRITE_PIECE, shared },
    });
    // Idle, the thread does not keep the process alive (a file given up by a failing
    // conversion must not hold it); it does while the caller waits for it.
    this.worker.unref();
    this.ended = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    this.failed = new Promise((resolve) => {
      this.worker.once('message', ({ offset, code, message }: { offset: number; code?: string; message: string }) =>
        resolve(new WriteFailure(offset, Object.assign(new Error(message), { code }))),
      );
      // A thread that dies (out of memory) fails the file where its writing stood.
      this.worker.once('error', (error: Error) => {
        resolve(new WriteFailure(this.writtenUpTo(), error));
        Atomics.store(this.control, FAILED, 1);
        Atomics.add(this.control, TO_CALLER, 1);
        Atomics.notify(this.control, TO_CALLER);
      });
    });
  }

  /**
   * Hands `data` over in pieces; it may be reused once this resolves. Pieces
   * are copied into slots, but data in the shared memory is written from
   * where it is, all but its last piece, and this resolves once those are
   * written.
   */
  async write(offset: number, data: Uint8Array): Promise<void> {
    const inPlaceUpTo = this.shared !== undefined && data.buffer === this.shared ? data.length - WRITE_PIECE : 0;
    for (let at = 0; at < data.length; at += WRITE_PIECE) {
      if (this.head - Atomics.load(this.control, TAIL) >= SLOTS) await this.until(SLOTS / 2);
      const slot = this.head % SLOTS;
      const piece = data.subarray(at, Math.min(data.length, at + WRITE_PIECE));
      const inPlace = at < inPlaceUpTo;
      if (!inPlace) this.slots.set(piece, slot * WRITE_PIECE);
      this.descriptors[3 * slot] = offset + at;
      this.descriptors[3 * slot + 1] = piece.length;
      this.descriptors[3 * slot + 2] = inPlace ? piece.byteOffset : -1;
      Atomics.store(this.control, HEAD, ++this.head);
      this.signal();
    }
    if (inPlaceUpTo > 0) await this.until(1);
  }

  /** Resolves once every piece handed over is written, and ends the thread. */
  async finish(): Promise<void> {
    await this.until(0);
    await this.stop();
  }

  /** Ends the thread once the piece it is writing is done; the rest is not written. */
  async stop(): Promise<void> {
    Atomics.store(this.control, STOP, 1);
    this.signal();
    this.worker.ref();
    await this.ended;
  }

  private signal(): void {
    Atomics.add(this.control, TO_THREAD, 1);
    Atomics.notify(this.control, TO_THREAD);
  }

  /** Waits until at most `pending` pieces are still to be written; throws a failed write's error. */
  private async until(pending: number): Promise<void> {
    for (;;) {
      const seen = Atomics.load(this.control, TO_CALLER);
      if (Atomics.load(this.control, FAILED) !== 0) throw await this.failed;
      if (this.head - Atomics.load(this.control, TAIL) <= pending) return;
      const wait = waitAsync(this.control, TO_CALLER, seen);
      if (!wait.async) continue;
      this.worker.ref();
      try {
        await wait.value;
      } finally {
        this.worker.unref();
      }
    }
  }

  /** The file offset of the next piece to be written. */
  private writtenUpTo(): number {
    return this.descriptors[3 * (Atomics.load(this.control, TAIL) % SLOTS)]!;
  }
}
