import type { CkptClient } from "../api.js";
import { backoffDelay } from "../download/retry.js";
import type { RetryPolicy } from "../download/types.js";
import { CkptApiError } from "../errors.js";
import { LineSplitter } from "./line-splitter.js";

export type OutputStream = "stdout" | "stderr";

export interface LogShipperOptions {
  client: CkptClient;
  projectId: string;
  jobId: string;
  nodeRank: number;
  /** Most output held for sending (approximate bytes); beyond it the oldest held lines are dropped. Default 8 MiB. */
  maxBufferedBytes?: number;
  /** Longest a line waits before it is sent. Default 500 ms. */
  flushIntervalMs?: number;
  /** One request is given up after this long (and its lines kept for the next). Default 10 s. */
  requestTimeoutMs?: number;
  /**
   * The job's creation (epoch ms, the server's clock). When this machine's clock reads earlier,
   * every timestamp is moved forward by the difference, so lines are not dated before their job.
   */
  notBeforeMs?: number;
  /** Called (rarely: once per kind of trouble) with a warning for the person at the terminal. */
  onWarning?: (message: string) => void;
}

export interface LogShipSummary {
  /** Lines the server stored. */
  sentLines: number;
  /** Lines given up: the buffer was full, the server refused them, or time ran out at the end. */
  droppedLines: number;
  /** The last error a request met, if any. */
  lastError: string | null;
}

interface QueuedLine {
  timestamp: string;
  stream: OutputStream;
  message: string;
  bytes: number;
  /** A note that this many lines were dropped before it: not output of the command. */
  dropNote?: number;
}

/** The server's batch limits (MAX_LOG_LINES_PER_BATCH), and a body well under its default 1 MiB. */
const MAX_BATCH_LINES = 1000;
const MAX_BATCH_BYTES = 256 << 10;
/** Between tries of a batch the server did not take; the shipper never gives a batch up for that. */
const BATCH_BACKOFF: RetryPolicy = { attempts: Infinity, baseDelayMs: 250, maxDelayMs: 5000 };
/** Lines are at least this far apart (1 µs), so at most 1000 of one rank share a millisecond: truss's page size. */
const MIN_SPACING_NS = 1000n;

/**
 * Sends a command's output to the job's logs in batches, in the background. `write` never waits
 * and never throws: lines are held in a bounded buffer and sent one batch at a time; when the
 * server is slow or down the buffer fills and its oldest lines are dropped and counted, so the
 * command is never held up by the server.
 */
export class LogShipper {
  private readonly splitters: Record<OutputStream, LineSplitter> = { stdout: new LineSplitter(), stderr: new LineSplitter() };
  private queue: QueuedLine[] = [];
  private head = 0;
  private queuedBytes = 0;
  private lastNs = 0n;
  private readonly offsetNs: bigint;
  private readonly maxBufferedBytes: number;
  private readonly flushIntervalMs: number;
  private readonly requestTimeoutMs: number;
  private sentLines = 0;
  private droppedLines = 0;
  /** Dropped lines not yet reported in the log itself. */
  private droppedUnmarked = 0;
  private lastError: string | null = null;
  private warnedDrop = false;
  private warnedFailure = false;
  private closing = false;
  private wake: (() => void) | null = null;
  private readonly giveUp = new AbortController();
  private readonly pumping: Promise<void>;

  constructor(private readonly options: LogShipperOptions) {
    this.maxBufferedBytes = options.maxBufferedBytes ?? 8 << 20;
    this.flushIntervalMs = options.flushIntervalMs ?? 500;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    const behindMs = options.notBeforeMs === undefined ? 0 : options.notBeforeMs - Date.now();
    this.offsetNs = behindMs > 0 ? BigInt(Math.ceil(behindMs)) * 1_000_000n : 0n;
    this.pumping = this.pump();
  }

  /** Takes a chunk of the command's output. Never waits, never throws. */
  write(stream: OutputStream, chunk: Buffer): void {
    if (this.closing) return;
    for (const message of this.splitters[stream].push(chunk)) this.enqueue(stream, message);
  }

  /**
   * The command has ended: sends what is left, for at most `deadlineMs`, then stops. Lines not
   * sent by then are counted as dropped.
   */
  async close(deadlineMs = 5000): Promise<LogShipSummary> {
    for (const stream of ["stdout", "stderr"] as const) for (const message of this.splitters[stream].end()) this.enqueue(stream, message);
    this.closing = true;
    this.wake?.();
    const timer = setTimeout(() => this.giveUp.abort(), deadlineMs);
    try {
      await this.pumping;
    } finally {
      clearTimeout(timer);
    }
    this.drop(this.queue.length - this.head);
    return { sentLines: this.sentLines, droppedLines: this.droppedLines, lastError: this.lastError };
  }

  private enqueue(stream: OutputStream, message: string): void {
    const line: QueuedLine = { timestamp: this.nextTimestamp(), stream, message, bytes: 2 * message.length + 64 };
    this.queue.push(line);
    this.queuedBytes += line.bytes;
    while (this.queuedBytes > this.maxBufferedBytes && this.head < this.queue.length) {
      this.queuedBytes -= this.queue[this.head]!.bytes;
      this.head++;
      this.drop(1);
    }
    if (this.queuedBytes >= MAX_BATCH_BYTES) this.wake?.();
  }

  private drop(lines: number): void {
    if (lines <= 0) return;
    this.droppedLines += lines;
    this.droppedUnmarked += lines;
    if (!this.warnedDrop && !this.closing) {
      this.warnedDrop = true;
      this.warn(
        `warning: the server is not taking the command's output fast enough${this.lastError ? ` (${this.lastError})` : ""}; ` +
          "lines are being dropped from the job's logs (the command itself is not slowed, and its output here is complete)",
      );
    }
  }

  private nextTimestamp(): string {
    const nowNs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n + this.offsetNs;
    this.lastNs = nowNs > this.lastNs + MIN_SPACING_NS ? nowNs : this.lastNs + MIN_SPACING_NS;
    return this.lastNs.toString();
  }

  private warn(message: string): void {
    try {
      this.options.onWarning?.(message);
    } catch {
      /* a warning must not break shipping */
    }
  }

  private async pump(): Promise<void> {
    let failedTries = 0;
    while (!this.giveUp.signal.aborted) {
      if (this.head >= this.queue.length) {
        if (this.closing) return;
        await this.sleep(this.flushIntervalMs, true);
        continue;
      }
      if (!this.closing && failedTries === 0 && this.queuedBytes < MAX_BATCH_BYTES) await this.sleep(this.flushIntervalMs, true);
      const batch = this.takeBatch();
      if (batch.length === 0) continue;
      const outcome = await this.send(batch);
      if (outcome === "sent") {
        failedTries = 0;
        continue;
      }
      if (outcome === "refused") {
        this.drop(batch.filter((l) => l.dropNote === undefined).length);
        continue;
      }
      this.putBack(batch);
      failedTries++;
      await this.sleep(backoffDelay(failedTries, BATCH_BACKOFF), false);
    }
  }

  /** The oldest held lines, up to the batch limits; a note of dropped lines goes first. */
  private takeBatch(): QueuedLine[] {
    const batch: QueuedLine[] = [];
    let bytes = 0;
    if (this.droppedUnmarked > 0 && this.head < this.queue.length) {
      const first = this.queue[this.head]!;
      const message = `[ckpt] ${this.droppedUnmarked} line(s) of output were dropped here: the server did not take them in time`;
      batch.push({ timestamp: first.timestamp, stream: "stderr", message, bytes: 2 * message.length + 64, dropNote: this.droppedUnmarked });
      this.droppedUnmarked = 0;
    }
    while (this.head < this.queue.length && batch.length < MAX_BATCH_LINES) {
      const line = this.queue[this.head]!;
      if (batch.length > 0 && bytes + line.bytes > MAX_BATCH_BYTES) break;
      batch.push(line);
      bytes += line.bytes;
      this.queuedBytes -= line.bytes;
      this.head++;
    }
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return batch;
  }

  /** A batch that failed goes back in front, within the buffer's bound (the oldest lines go first). */
  private putBack(batch: QueuedLine[]): void {
    // The note is written afresh, with the count as it then is.
    for (const note of batch) this.droppedUnmarked += note.dropNote ?? 0;
    const lines = batch.filter((l) => l.dropNote === undefined);
    const rest = this.queue.slice(this.head);
    this.queue = [...lines, ...rest];
    this.head = 0;
    this.queuedBytes += lines.reduce((n, l) => n + l.bytes, 0);
    while (this.queuedBytes > this.maxBufferedBytes && this.head < this.queue.length) {
      this.queuedBytes -= this.queue[this.head]!.bytes;
      this.head++;
      this.drop(1);
    }
  }

  private async send(batch: QueuedLine[]): Promise<"sent" | "retry" | "refused"> {
    const { client, projectId, jobId, nodeRank } = this.options;
    const signal = AbortSignal.any([AbortSignal.timeout(this.requestTimeoutMs), this.giveUp.signal]);
    try {
      await client.request(
        "POST",
        `/v1/training_projects/${encodeURIComponent(projectId)}/jobs/${encodeURIComponent(jobId)}/logs/batch`,
        { body: { node_rank: nodeRank, lines: batch.map(({ timestamp, stream, message }) => ({ timestamp, stream, message })) }, signal },
      );
      this.sentLines += batch.filter((l) => l.dropNote === undefined).length;
      return "sent";
    } catch (err) {
      const status = err instanceof CkptApiError ? err.status : 0;
      // Giving up at the deadline aborts the request in flight: keep the error that explains why it was needed.
      if (!(this.giveUp.signal.aborted && this.lastError !== null)) this.lastError = (err as Error).message;
      const retryable = status === 0 || status === 408 || status === 429 || status >= 500;
      if (!this.warnedFailure && !this.closing) {
        this.warnedFailure = true;
        this.warn(`warning: sending the command's output to the job's logs failed (${this.lastError}); ${retryable ? "retrying" : "giving up on those lines"}`);
      }
      return retryable ? "retry" : "refused";
    }
  }

  /** Waits `ms`, or less when woken (new data, closing) if `wakeable`, or when giving up. */
  private sleep(ms: number, wakeable: boolean): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.giveUp.signal.removeEventListener("abort", done);
        if (this.wake === done) this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.giveUp.signal.addEventListener("abort", done);
      if (wakeable) this.wake = done;
    });
  }
}
