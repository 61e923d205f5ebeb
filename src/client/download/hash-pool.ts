import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { HashCommand, HashReply } from "./hash-worker.js";
import type { Part } from "./parts.js";

/**
 * SHA-256 verification off the event loop: a few worker threads (at most one per core, at
 * most 8), started on first use. Each file is pinned to one thread, which hashes it in file
 * order from the page cache as the download reports how far the file is contiguously written;
 * files are spread over the threads, so many files use many cores and one large file is hashed
 * while its bytes land (what finished out of order is left for the end).
 */
const ADVANCE_STEP = 8 << 20;

export class HashPool {
  private workers: { worker: Worker; files: number }[] = [];
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (sha256: string) => void; reject: (err: Error) => void }>();
  private closed = false;

  constructor(private readonly size = Math.max(1, Math.min(8, availableParallelism()))) {}

  /** A hasher for one file being downloaded into `path` in `parts`. */
  track(path: string, parts: readonly Part[], alreadyDone: Iterable<number>): FileHasher {
    return new FileHasher(this, path, parts, alreadyDone);
  }

  /** @internal */
  assign(): { id: number; send: (command: HashCommand) => void; release: () => void } {
    if (this.closed) throw new Error("the hash pool is closed");
    if (this.workers.length < this.size && this.workers.every((w) => w.files > 0)) this.workers.push({ worker: this.spawn(), files: 0 });
    const slot = this.workers.reduce((best, w) => (w.files < best.files ? w : best));
    slot.files++;
    const id = this.nextId++;
    let released = false;
    return {
      id,
      send: (command) => slot.worker.postMessage(command),
      release: () => {
        if (released) return;
        released = true;
        slot.files--;
      },
    };
  }

  /** @internal */
  awaitDigest(id: number): Promise<string> {
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  async close(): Promise<void> {
    this.closed = true;
    const workers = this.workers;
    this.workers = [];
    await Promise.all(workers.map((w) => w.worker.terminate()));
  }

  private spawn(): Worker {
    const worker = new Worker(new URL("./hash-worker.js", import.meta.url));
    worker.unref();
    worker.on("message", (reply: HashReply) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if ("sha256" in reply) waiter.resolve(reply.sha256);
      else waiter.reject(new Error(reply.error));
    });
    worker.on("error", (err) => {
      // A hashing thread that dies fails the digests it owed; the files are fetched again.
      for (const [id, waiter] of this.pending) {
        this.pending.delete(id);
        waiter.reject(err);
      }
    });
    return worker;
  }
}

/**
 * One file's hashing: tracks how far the file is contiguously written from byte 0 (parts done,
 * and the progress of the part at the frontier) and tells the file's thread as it advances.
 * Nothing is sent until `enable()` (a digest was announced).
 */
export class FileHasher {
  private readonly progress: number[];
  private frontierPart = 0;
  private enabled = false;
  private slot: ReturnType<HashPool["assign"]> | null = null;
  private sentUpTo = 0;

  constructor(
    private readonly pool: HashPool,
    private readonly path: string,
    private readonly parts: readonly Part[],
    alreadyDone: Iterable<number>,
  ) {
    this.progress = parts.map(() => 0);
    for (const index of alreadyDone) if (parts[index]) this.progress[index] = parts[index].end - parts[index].start + 1;
  }

  /** Called once the server has announced a digest to check against. */
  enable(): void {
    if (this.enabled) return;
    this.enabled = true;
    this.slot = this.pool.assign();
    this.advance();
  }

  /** `bytes` more of part `index` are written, contiguously from where that part stood. */
  written(index: number, bytes: number): void {
    this.progress[index]! += bytes;
    if (index === this.frontierPart) this.advance();
  }

  /** The digest of the whole file; call once every part is written. */
  async digest(): Promise<string> {
    if (!this.slot) this.enable();
    const slot = this.slot!;
    const size = this.parts.length ? this.parts[this.parts.length - 1]!.end + 1 : 0;
    const answer = this.pool.awaitDigest(slot.id);
    slot.send({ op: "digest", id: slot.id, path: this.path, size });
    try {
      return await answer;
    } finally {
      slot.release();
      this.slot = null;
    }
  }

  /** The file failed or starts over: the thread forgets it. */
  drop(): void {
    if (!this.slot) return;
    this.slot.send({ op: "drop", id: this.slot.id });
    this.slot.release();
    this.slot = null;
  }

  private advance(): void {
    let upTo = 0;
    while (this.frontierPart < this.parts.length) {
      const part = this.parts[this.frontierPart]!;
      const length = part.end - part.start + 1;
      upTo = part.start + Math.min(length, this.progress[this.frontierPart]!);
      if (this.progress[this.frontierPart]! < length) break;
      this.frontierPart++;
    }
    if (this.frontierPart >= this.parts.length && this.parts.length) upTo = this.parts[this.parts.length - 1]!.end + 1;
    // Tell the thread in steps of at least ADVANCE_STEP (or at a part's end): each message
    // costs the event loop a postMessage, which a profile showed at 1 MiB steps.
    if (!this.slot || upTo <= this.sentUpTo || (upTo - this.sentUpTo < ADVANCE_STEP && this.frontierPart < this.parts.length && upTo !== this.parts[this.frontierPart]!.start)) return;
    this.sentUpTo = upTo;
    this.slot.send({ op: "advance", id: this.slot.id, path: this.path, upTo });
  }
}
