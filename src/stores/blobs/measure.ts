import { createHash } from "node:crypto";
import { Transform } from "node:stream";
import { BlobIntegrityError, type PutResult } from "./store.js";

export interface MeasureOptions {
  /** More bytes fail at once; fewer fail at the end (unless `checkAtEnd` is false). */
  expectedSize?: number;
  /** Lowercase hex; a different digest fails at the end. */
  expectedSha256?: string;
  /** False: count only (the parts of a direct upload, whose digest is taken over the whole file). */
  hash?: boolean;
  /** False: only "too long" fails while streaming; the caller judges the length at the end. */
  checkAtEnd?: boolean;
  /** Sees the chunks in order until it returns false (PutOptions.observe). */
  observe?: (chunk: Buffer) => boolean;
}

/**
 * Counts and hashes a body as it passes, for every blob store. Longer than expectedSize fails at
 * once; shorter, or a digest other than expectedSha256, fails at the end, before the stream ends:
 * a consumer never sees a clean end of an unacceptable body.
 */
export class MeasuredBody {
  readonly stream: Transform;
  private bytes = 0;
  private sha256: string | null = null;

  constructor(options: MeasureOptions) {
    const hash = options.hash === false ? null : createHash("sha256");
    const { expectedSize, expectedSha256 } = options;
    let observe = options.observe;
    this.stream = new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.bytes += chunk.length;
        if (expectedSize !== undefined && this.bytes > expectedSize) {
          done(new BlobIntegrityError(`body is longer than the declared ${expectedSize} bytes`));
          return;
        }
        if (observe && !observe(chunk)) observe = undefined;
        hash?.update(chunk);
        done(null, chunk);
      },
      flush: (done) => {
        if (options.checkAtEnd !== false && expectedSize !== undefined && this.bytes !== expectedSize) {
          done(new BlobIntegrityError(`body ended after ${this.bytes} of the declared ${expectedSize} bytes`));
          return;
        }
        if (hash) {
          const sha256 = hash.digest("hex");
          if (options.checkAtEnd !== false && expectedSha256 !== undefined && sha256 !== expectedSha256) {
            done(new BlobIntegrityError(`sha256 of the body is ${sha256}, not the declared ${expectedSha256}`));
            return;
          }
          this.sha256 = sha256;
        }
        done();
      },
    });
  }

  /** Bytes seen so far. */
  size(): number {
    return this.bytes;
  }

  /** Size and digest of a body that has ended and passed its checks. */
  result(): PutResult {
    if (this.sha256 === null) throw new Error("body has not been read to its end (or was not hashed)");
    return { sizeBytes: this.bytes, sha256: this.sha256 };
  }
}

/** Size and SHA-256 of a whole stream: a direct upload read back once to verify it. */
export async function measureStream(source: AsyncIterable<unknown>): Promise<PutResult> {
  const hash = createHash("sha256");
  let sizeBytes = 0;
  for await (const chunk of source) {
    hash.update(chunk as Buffer);
    sizeBytes += (chunk as Buffer).length;
  }
  return { sizeBytes, sha256: hash.digest("hex") };
}
