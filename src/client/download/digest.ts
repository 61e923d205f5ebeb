import { createHash, type Hash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { IntegrityError } from "./errors.js";
import type { Part } from "./parts.js";

/** Read-back block: large enough to keep syscalls few, small enough to keep files in flight cheap. */
const READ_BLOCK = 1 << 20;

/**
 * SHA-256 of a file downloaded in parts, computed while the download runs. Parts finish out of
 * order, so whenever the parts from the start of the file up to some offset are all written,
 * that stretch is read back (from the page cache it was just written to) and hashed. At the
 * end only what finished last is left, instead of the whole file: on a large shard that is
 * seconds saved after the last byte arrives.
 */
export class FrontierHasher {
  private readonly hash = createHash("sha256");
  private readonly done: Set<number>;
  private next = 0;
  private working: Promise<void> | null = null;
  private failure: unknown = null;
  /** Allocated on first use: a download the server announces no digest for never needs them. */
  private buffers: [Buffer, Buffer] | null = null;

  /**
   * @param parts every part of the file, in order
   * @param alreadyDone parts an earlier run completed
   * @param wanted whether a digest is worth computing yet (the server may announce none)
   */
  constructor(
    private readonly handle: FileHandle,
    private readonly parts: readonly Part[],
    alreadyDone: Iterable<number>,
    private readonly wanted: () => boolean,
  ) {
    this.done = new Set(alreadyDone);
    this.advance();
  }

  partDone(index: number): void {
    this.done.add(index);
    this.advance();
  }

  /** The digest of the whole file; call once every part is done. */
  async digest(): Promise<string> {
    while (this.working) await this.working;
    if (this.failure === null) await this.hashReadyParts().catch((err: unknown) => (this.failure = err));
    if (this.failure !== null) throw this.failure;
    if (this.next < this.parts.length) throw new IntegrityError("the file was not complete when its digest was taken");
    return this.hash.digest("hex");
  }

  private advance(): void {
    if (this.working || this.failure !== null || !this.wanted() || !this.nextPartReady()) return;
    this.working = this.hashReadyParts()
      .catch((err: unknown) => {
        this.failure = err;
      })
      .finally(() => {
        this.working = null;
        this.advance(); // a part may have finished after the loop's last look
      });
  }

  private nextPartReady(): boolean {
    const part = this.parts[this.next];
    return part !== undefined && this.done.has(part.index);
  }

  private async hashReadyParts(): Promise<void> {
    while (this.nextPartReady()) {
      const part = this.parts[this.next]!;
      this.buffers ??= [Buffer.allocUnsafe(READ_BLOCK), Buffer.allocUnsafe(READ_BLOCK)];
      await hashRange(this.handle, this.hash, part.start, part.end + 1, this.buffers);
      this.next++;
    }
  }
}

/** Hashes bytes [start, end) of an open file, reading the next block while one is hashed. */
async function hashRange(handle: FileHandle, hash: Hash, start: number, end: number, buffers: [Buffer, Buffer]): Promise<void> {
  const read = async (position: number, buffer: Buffer): Promise<Buffer> => {
    const length = Math.min(buffer.length, end - position);
    const { bytesRead } = await handle.read(buffer, 0, length, position);
    if (bytesRead !== length) throw new IntegrityError("the partial file is shorter than expected");
    return buffer.subarray(0, length);
  };
  let pending = start < end ? read(start, buffers[0]) : null;
  for (let position = start, turn = 1; pending; turn ^= 1) {
    const chunk = await pending;
    position += chunk.length;
    pending = position < end ? read(position, buffers[turn as 0 | 1]) : null;
    hash.update(chunk);
  }
}
