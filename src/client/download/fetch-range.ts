import type { FileHandle } from "node:fs/promises";
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import { header, openRequest, readSmallBody, translate, TransferError, type TransferAgents } from "../transfer/http.js";
import { BlobRequestError, RangeNotHonouredError, RemoteChangedError } from "./errors.js";
import { parseRetryAfter } from "./retry.js";
import { isSha256Hex } from "../../domain/digests.js";

/**
 * Bodies arrive in socket-sized chunks (16-64 KiB); writing each one costs a thread-pool round
 * trip. Gathering them into positional writes of about 1 MiB keeps writes few (see
 * BENCHMARKS.md), for at most two batches held per request in flight.
 */
const WRITE_BATCH_BYTES = 1 << 20;
const MAX_REDIRECTS = 5;

export interface RangeRequest {
  /** Presigned URL; never put in an error message. */
  url: string;
  /** First and last byte wanted (inclusive). */
  start: number;
  end: number;
  /** Size of the whole file, from the listing. */
  fileSize: number;
  /** ETag of the version being fetched, sent as If-Match so a replaced file answers 412. */
  ifMatch?: string | null;
  /** Destination, written at the same offsets. */
  handle: FileHandle;
  agents: TransferAgents;
  signal: AbortSignal;
  /** No byte for this long fails the request (then it is retried). */
  idleTimeoutMs?: number;
  /** Sees the response's validators before any byte is written; throws to refuse the body. */
  onValidators(etag: string | undefined, sha256: string | undefined): void;
  /** Called after each write with the number of bytes now on disk (in order, from `start`). */
  onWritten(bytes: number): void;
}

/**
 * One ranged GET of a presigned URL, its body written at its offsets. Uses nothing but GET and
 * Range (no HEAD, no ckpt-only header), so it works on S3 presigned URLs too. A body cut short
 * throws after writing what arrived, so a retry continues from there. Throws BlobRequestError
 * (status 0 when no usable answer came), RemoteChangedError, RangeNotHonouredError or AbortError.
 */
export async function fetchRangeInto(req: RangeRequest): Promise<void> {
  const { response, ownFailure } = await requestFollowingRedirects(req);
  try {
    const status = response.statusCode ?? 0;
    if (status !== 200 && status !== 206) throw await statusError(response);
    checkRange(status, response.headers, req);
    req.onValidators(header(response.headers, "etag"), sha256Of(response.headers));
  } catch (err) {
    response.destroy();
    throw err;
  }
  await writeBody(response, req, ownFailure);
}

/** The GET, following redirects (S3 answers 301/307 for a bucket in another region, to another host). */
async function requestFollowingRedirects(req: RangeRequest): Promise<{ response: IncomingMessage; ownFailure: () => Error | null }> {
  const headers: Record<string, string> = { range: `bytes=${req.start}-${req.end}` };
  if (req.ifMatch) headers["if-match"] = req.ifMatch;
  let url = req.url;
  for (let hops = 0; ; hops++) {
    let response: IncomingMessage;
    let ownFailure: () => Error | null;
    try {
      const exchange = openRequest({ method: "GET", url, headers, agents: req.agents, signal: req.signal, idleTimeoutMs: req.idleTimeoutMs });
      exchange.request.end();
      ownFailure = exchange.ownFailure;
      response = await exchange.response;
    } catch (err) {
      throw blobError(err);
    }
    const status = response.statusCode ?? 0;
    const location = header(response.headers, "location");
    if (![301, 302, 303, 307, 308].includes(status) || location === undefined) return { response, ownFailure };
    response.destroy();
    if (hops >= MAX_REDIRECTS) throw new BlobRequestError(status, `more than ${MAX_REDIRECTS} redirects`);
    try {
      url = new URL(location, url).href;
    } catch {
      throw new BlobRequestError(status, "a redirect to an invalid location");
    }
  }
}

/**
 * Writes the body as it arrives, in batches, one positional write in flight while the next
 * batch fills; reading pauses (backpressure reaches the server through TCP) while a full batch
 * waits for the write before it. Bytes are reported only once written, in order. Whatever
 * ends the body early — FIN, RST, a stall, an abort — rejects, after writing what arrived.
 */
function writeBody(body: IncomingMessage, req: RangeRequest, ownFailure: () => Error | null): Promise<void> {
  const expected = req.end - req.start + 1;
  return new Promise<void>((resolve, reject) => {
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let position = req.start;
    let received = 0;
    let written = 0;
    let writing: Promise<void> | null = null;
    let failure: unknown = null;
    let ended = false;
    let settled = false;

    const settle = (): void => {
      if (settled || writing) return;
      if (failure === null && !ended) return;
      settled = true;
      if (failure !== null) reject(failure);
      else if (written !== expected) reject(new BlobRequestError(0, `the connection closed after ${written} of ${expected} bytes`));
      else resolve();
    };
    const fail = (err: unknown): void => {
      failure ??= err;
      body.destroy();
      // What arrived before the failure is good data of this range: write it, so a retry
      // continues where this one stopped (unless we are being cancelled).
      if (!req.signal.aborted && failure instanceof BlobRequestError) flush();
      settle();
    };
    const flush = (): void => {
      if (writing || batchBytes === 0) return;
      const chunks = batch;
      const bytes = batchBytes;
      const at = position;
      batch = [];
      batchBytes = 0;
      position += bytes;
      writing = writeAllAt(req.handle, chunks, at).then(
        () => {
          written += bytes;
          req.onWritten(bytes);
        },
        (err: unknown) => {
          failure ??= err;
          body.destroy();
        },
      );
      void writing.finally(() => {
        writing = null;
        if (failure === null) {
          if (ended || batchBytes >= WRITE_BATCH_BYTES) flush();
          // The batch is free again: read on while the write (if any) runs.
          if (!ended && body.isPaused()) body.resume();
        } else if (failure instanceof BlobRequestError && !req.signal.aborted) flush();
        if (!writing) settle();
      });
    };

    body.on("data", (chunk: Buffer) => {
      if (failure !== null) return;
      received += chunk.length;
      if (received > expected) return fail(new BlobRequestError(0, "the server sent more bytes than requested"));
      batch.push(chunk);
      batchBytes += chunk.length;
      if (batchBytes >= WRITE_BATCH_BYTES) {
        if (writing) body.pause();
        else flush();
      }
    });
    body.once("end", () => {
      ended = true;
      flush();
      settle();
    });
    body.once("close", () => {
      if (ended || failure !== null) return;
      const own = ownFailure();
      fail(
        req.signal.aborted
          ? (req.signal.reason ?? abortError())
          : new BlobRequestError(0, own ? `${own.message} after ${received} of ${expected} bytes` : `the connection closed after ${received} of ${expected} bytes`),
      );
    });
    body.on("error", (err) => {
      if (failure === null && !ended) fail(req.signal.aborted ? (req.signal.reason ?? err) : blobError(ownFailure() ?? err));
    });
  });
}

function abortError(): Error {
  const err = new Error("the operation was aborted");
  err.name = "AbortError";
  return err;
}

/** Positional writev, continuing after a short write (rare on files, but allowed). */
async function writeAllAt(handle: FileHandle, chunks: Buffer[], position: number): Promise<void> {
  const total = chunks.reduce((sum, c) => sum + c.length, 0);
  const { bytesWritten: first } = await handle.writev(chunks, position);
  if (first === total) return;
  const rest = Buffer.concat(chunks).subarray(first);
  for (let offset = 0; offset < rest.length; ) {
    const { bytesWritten } = await handle.write(rest, offset, rest.length - offset, position + first + offset);
    offset += bytesWritten;
  }
}

/**
 * A 206 must be exactly the range asked for, of a file of the listed size, with a matching
 * length; a 200 is the whole file, acceptable only if that is what was asked for.
 */
function checkRange(status: number, headers: IncomingHttpHeaders, req: RangeRequest): void {
  const length = header(headers, "content-length");
  if (status === 206) {
    const m = /^bytes ([0-9]+)-([0-9]+)\/([0-9]+|\*)$/.exec(header(headers, "content-range") ?? "");
    if (!m) throw new BlobRequestError(0, "a partial response without a valid Content-Range");
    if (m[3] !== "*" && Number(m[3]) !== req.fileSize) throw new RemoteChangedError(`the server has ${m[3]} bytes, the listing said ${req.fileSize}`);
    if (Number(m[1]) !== req.start || Number(m[2]) !== req.end) throw new BlobRequestError(0, `asked for bytes ${req.start}-${req.end}, got ${m[1]}-${m[2]}`);
    if (length !== undefined && Number(length) !== req.end - req.start + 1)
      throw new BlobRequestError(0, `a partial response of ${length} bytes for a range of ${req.end - req.start + 1}`);
    return;
  }
  if (length !== undefined && Number(length) !== req.fileSize) throw new RemoteChangedError(`the server has ${length} bytes, the listing said ${req.fileSize}`);
  if (req.start !== 0 || req.end !== req.fileSize - 1) throw new RangeNotHonouredError("the server ignored the Range header");
}

/** The digest a server announces: ckpt's x-ckpt-sha256, or S3 user metadata x-amz-meta-sha256. */
function sha256Of(headers: IncomingHttpHeaders): string | undefined {
  const value = (header(headers, "x-ckpt-sha256") ?? header(headers, "x-amz-meta-sha256"))?.trim().toLowerCase();
  return isSha256Hex(value) ? value : undefined;
}

/** The server's own words on a failed request (JSON `message`, S3 XML `<Message>`), never the URL. */
async function statusError(response: IncomingMessage): Promise<BlobRequestError> {
  const status = response.statusCode ?? 0;
  let text = "";
  try {
    text = (await readSmallBody(response, 64 << 10)).toString("utf8").slice(0, 2000);
  } catch {
    /* no body, or an endless one: the status says enough */
  }
  let detail: string | undefined;
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === "string") detail = parsed.message;
  } catch {
    detail = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
  }
  const retryAfterMs = parseRetryAfter(header(response.headers, "retry-after"));
  return new BlobRequestError(status, `HTTP ${status}${detail ? `: ${detail}` : ""}`, retryAfterMs);
}

function blobError(err: unknown): unknown {
  if ((err as Error).name === "AbortError" || err instanceof BlobRequestError) return err;
  const translated = err instanceof TransferError ? err : translate(err);
  return new BlobRequestError(0, translated.message);
}
