import { createHash, type Hash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { IntegrityError } from "./errors.js";
import type { Part } from "./parts.js";

/** Read-back block: large enough to keep reads few, small enough to keep files in flight cheap. */
const READ_BLOCK = 1 << 20;

/**
 * SHA-256 of a file downloaded in parts, computed while the download runs, in file order.
 *
 * A part that starts exactly where hashing stands is hashed as its bytes are written (`sinkFor`):
 * that is every part of a file fetched one part at a time, which is how most files are
 * fetched. Parts fetched ahead of that point in parallel are read back (from the page cache
 * they were just written to) once everything before them is hashed. At the end only what
 * finished last is left to hash, instead of the whole file.
 */
export class FrontierHasher {
  private readonly hash = createHash("sha256");
  private readonly done: Set<number>;
  /** Bytes from the start of the file that are hashed. */
  private hashedTo = 0;
  private next = 0;
  private streaming: { part: Part; valid: boolean } | null = null;
  private working: Promise<void> | null = null;
  private failure: unknown = null;
  /** Allocated on first read-back. */
  private buffers: [Buffer, Buffer] | null = null;

  /**
   * @param parts every part of the file, in order
   * @param alreadyDone parts an earlier run completed
   * @param wanted whether a digest is worth computing (the server may announce none)
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

  /**
   * For a part about to be fetched: a function to feed its bytes to, in order as they are
   * written, if the part starts where hashing stands; otherwise undefined (it is read back).
   */
  sinkFor(part: Part): ((chunk: Buffer) => void) | undefined {
    if (this.streaming || this.working || this.failure !== null || part.start !== this.hashedTo) return undefined;
    const streaming = { part, valid: true };
    this.streaming = streaming;
    return (chunk) => {
      // Whether a digest is wanted is known from the response headers, before the first chunk.
      if (!streaming.valid || !this.wanted()) {
        streaming.valid = false;
        return;
      }
      this.hash.update(chunk);
    };
  }

  partDone(index: number): void {
    this.done.add(index);
    const streamed = this.streaming;
    if (streamed?.part.index === index) {
      this.streaming = null;
      if (streamed.valid) {
        this.hashedTo = streamed.part.end + 1;
        this.next = streamed.part.index + 1; // parts are numbered by their place in the file
      }
    }
    this.advance();
  }

  /** The digest of the whole file; call once every part is done. */
  async digest(): Promise<string> {
    while (this.working) await this.working;
    if (this.failure === null) await this.readBackReadyParts().catch((err: unknown) => (this.failure = err));
    if (this.failure !== null) throw this.failure;
    if (this.next < this.parts.length) throw new IntegrityError("the file was not complete when its digest was taken");
    return this.hash.digest("hex");
  }

  private advance(): void {
    if (this.working || this.streaming || this.failure !== null || !this.wanted() || !this.nextPartReady()) return;
    this.working = this.readBackReadyParts()
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

  private async readBackReadyParts(): Promise<void> {
    while (this.nextPartReady()) {
      const part = this.parts[this.next]!;
      this.buffers ??= [Buffer.allocUnsafe(READ_BLOCK), Buffer.allocUnsafe(READ_BLOCK)];
      await hashRange(this.handle, this.hash, part.start, part.end + 1, this.buffers);
      this.hashedTo = part.end + 1;
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
