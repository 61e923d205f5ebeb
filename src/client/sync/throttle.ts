import { setTimeout as sleep } from "node:timers/promises";
import { isStreamedBody } from "../transfer/api-fetch.js";

/** Bytes handed to the network at once, at most; small enough that a limited rate comes out smooth. */
const SLICE_BYTES = 64 << 10;

/**
 * A token bucket shared by every upload of one engine, so `--max-upload-rate` caps the total.
 *
 * A caller takes its bytes at once, possibly driving the bucket into debt, and then waits the
 * debt off. Concurrent callers thereby queue behind each other without a lock: each one's wait
 * includes the debt of those before it.
 */
export class TokenBucket {
  private tokens: number;
  private refilledAt: number;
  private readonly capacity: number;
  /**
   * Bytes sent at once: an eighth of a second's worth at low rates, so that the waits between
   * slices stay short and never look like a stalled connection to the idle timeout.
   */
  readonly sliceBytes: number;

  constructor(
    readonly bytesPerSecond: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    // A quarter of a second of burst: enough to keep the pipe full, too little to flood it.
    this.sliceBytes = Math.max(1, Math.min(SLICE_BYTES, Math.floor(bytesPerSecond / 8)));
    this.capacity = Math.max(this.sliceBytes, bytesPerSecond / 4);
    this.tokens = this.capacity;
    this.refilledAt = now();
  }

  /** Takes `bytes` and answers how long (ms) the caller must wait before sending them. */
  reserve(bytes: number): number {
    const now = this.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.refilledAt) * this.bytesPerSecond) / 1000);
    this.refilledAt = now;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.bytesPerSecond;
  }

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const waitMs = this.reserve(bytes);
    if (waitMs > 0) await sleep(waitMs, undefined, { signal });
  }
}

/**
 * A fetch whose streamed request bodies pass through `bucket`. Other requests (JSON bodies, GETs)
 * go through untouched. The file is still read chunk by chunk as it is sent: throttling only
 * delays the next read, it never buffers the file.
 */
export function throttledFetch(inner: typeof fetch, bucket: TokenBucket): typeof fetch {
  return (input, init) => {
    const body = init?.body;
    if (!isStreamedBody(body)) return inner(input, init);
    const throttled = throttle(body, bucket, init?.signal ?? undefined);
    return inner(input, { ...init, body: throttled as unknown as RequestInit["body"] });
  };
}

async function* throttle(source: AsyncIterable<Uint8Array>, bucket: TokenBucket, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    for (let offset = 0; offset < chunk.length; offset += bucket.sliceBytes) {
      const slice = chunk.subarray(offset, offset + bucket.sliceBytes);
      await bucket.take(slice.length, signal);
      yield slice;
    }
  }
}

