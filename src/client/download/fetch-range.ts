import type { FileHandle } from "node:fs/promises";
import { request, type Dispatcher } from "undici";
import { BlobRequestError, RangeNotHonouredError, RemoteChangedError } from "./errors.js";
import { parseRetryAfter } from "./retry.js";

/**
 * Bodies arrive in socket-sized chunks (16-64 KiB); writing each one costs a thread-pool round
 * trip. Gathering them into writes of about 1 MiB took a 512 MiB loopback download from about
 * 2.0 to 1.3 CPU-seconds when this was built (4 MiB batches did no better), for at most 1 MiB
 * held per request in flight.
 */
const WRITE_BATCH_BYTES = 1 << 20;

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
  dispatcher: Dispatcher;
  signal: AbortSignal;
  /** Sees the response's validators before any byte is written; throws to refuse the body. */
  onValidators(etag: string | undefined, sha256: string | undefined): void;
  /** Called after each write with the number of bytes now on disk. */
  onWritten(bytes: number): void;
  /** Fed every byte once written, in order (to hash the part as it streams). */
  sink?: (chunk: Buffer) => void;
}

/**
 * One ranged GET of a presigned URL, its body written at its offsets. Uses nothing but GET and
 * Range (no HEAD, no ckpt-only header), so it works on S3 presigned URLs too. A body cut short
 * throws after writing what arrived, so a retry continues from there.
 */
export async function fetchRangeInto(req: RangeRequest): Promise<void> {
  const response = await requestFollowingRedirects(req);
  const { statusCode, body } = response;
  try {
    if (statusCode !== 200 && statusCode !== 206) throw await statusError(response);
    checkRange(statusCode, response.headers, req);
    req.onValidators(header(response.headers, "etag"), sha256Of(response.headers));
  } catch (err) {
    body.destroy();
    throw err;
  }
  await writeBody(body, req);
}

/**
 * Writes the body in batches while it keeps arriving: one write is in flight while the next
 * batch fills, so the socket is not left idle for each write (that stall cost about a quarter
 * of the throughput on loopback). Bytes are reported only once written, in order.
 */
const MAX_REDIRECTS = 5;

/**
 * The GET, following redirects (S3 answers 301/307 for a bucket in another region). Followed
 * here rather than by undici's redirect interceptor, which cost about half a CPU-second per GiB
 * of body on the hot path in measurements.
 */
async function requestFollowingRedirects(req: RangeRequest): Promise<Dispatcher.ResponseData> {
  const headers: Record<string, string> = { range: `bytes=${req.start}-${req.end}` };
  if (req.ifMatch) headers["if-match"] = req.ifMatch;
  let url = req.url;
  for (let hops = 0; ; hops++) {
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, { method: "GET", headers, dispatcher: req.dispatcher, signal: req.signal });
    } catch (err) {
      throw networkError(err);
    }
    const location = header(response.headers, "location");
    if (![301, 302, 303, 307, 308].includes(response.statusCode) || location === undefined) return response;
    response.body.destroy();
    if (hops >= MAX_REDIRECTS) throw new BlobRequestError(response.statusCode, `more than ${MAX_REDIRECTS} redirects`);
    url = new URL(location, url).href;
  }
}

async function writeBody(body: AsyncIterable<Buffer>, req: RangeRequest): Promise<void> {
  const expected = req.end - req.start + 1;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let nextPosition = req.start; // where the next batch goes
  let written = 0;
  let writing: Promise<void> = Promise.resolve();
  const flush = (): Promise<void> => {
    const chunks = batch;
    const bytes = batchBytes;
    const position = nextPosition;
    batch = [];
    batchBytes = 0;
    nextPosition += bytes;
    writing = writing.then(async () => {
      if (bytes === 0) return;
      await writeAllAt(req.handle, chunks, position);
      if (req.sink) for (const chunk of chunks) req.sink(chunk);
      written += bytes;
      req.onWritten(bytes);
    });
    return writing;
  };
  try {
    for await (const chunk of body) {
      if (nextPosition - req.start + batchBytes + chunk.length > expected) throw new BlobRequestError(0, "the server sent more bytes than requested");
      batch.push(chunk);
      batchBytes += chunk.length;
      if (batchBytes >= WRITE_BATCH_BYTES) {
        await writing; // at most one write in flight: memory stays at two batches per request
        void flush().catch(() => {}); // its failure surfaces through `writing`
      }
    }
    await flush();
  } catch (err) {
    // What arrived before the failure is good data of this range: keep it, so a retry
    // continues where this one stopped (unless we are being cancelled).
    await writing.catch(() => {});
    if (!req.signal.aborted) await flush().catch(() => {});
    throw err instanceof BlobRequestError || req.signal.aborted ? err : networkError(err);
  }
  if (written !== expected) throw new BlobRequestError(0, `the connection closed after ${written} of ${expected} bytes`);
}

/** writev, continuing after a short write (rare on files, but allowed). */
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
 * A 206 must be exactly the range asked for, of a file of the listed size; a 200 is the whole
 * file, acceptable only if that is what was asked for.
 */
function checkRange(status: number, headers: Dispatcher.ResponseData["headers"], req: RangeRequest): void {
  if (status === 206) {
    const m = /^bytes ([0-9]+)-([0-9]+)\/([0-9]+|\*)$/.exec(header(headers, "content-range") ?? "");
    if (!m) throw new BlobRequestError(0, "a partial response without a valid Content-Range");
    if (m[3] !== "*" && Number(m[3]) !== req.fileSize)
      throw new RemoteChangedError(`the server has ${m[3]} bytes, the listing said ${req.fileSize}`);
    if (Number(m[1]) !== req.start || Number(m[2]) !== req.end)
      throw new BlobRequestError(0, `asked for bytes ${req.start}-${req.end}, got ${m[1]}-${m[2]}`);
    return;
  }
  const length = header(headers, "content-length");
  if (length !== undefined && Number(length) !== req.fileSize)
    throw new RemoteChangedError(`the server has ${length} bytes, the listing said ${req.fileSize}`);
  if (req.start !== 0 || req.end !== req.fileSize - 1) throw new RangeNotHonouredError("the server ignored the Range header");
}

function header(headers: Dispatcher.ResponseData["headers"], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The digest a server announces: ckpt's x-ckpt-sha256, or S3 user metadata x-amz-meta-sha256. */
function sha256Of(headers: Dispatcher.ResponseData["headers"]): string | undefined {
  const value = (header(headers, "x-ckpt-sha256") ?? header(headers, "x-amz-meta-sha256"))?.trim().toLowerCase();
  return value && /^[0-9a-f]{64}$/.test(value) ? value : undefined;
}

/** The server's own words on a failed request (JSON `message`, S3 XML `<Message>`), never the URL. */
async function statusError(response: Dispatcher.ResponseData): Promise<BlobRequestError> {
  let text = "";
  try {
    text = (await response.body.text()).slice(0, 2000);
  } catch {
    /* no body: the status says enough */
  }
  let detail: string | undefined;
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === "string") detail = parsed.message;
  } catch {
    detail = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
  }
  const retryAfterMs = parseRetryAfter(header(response.headers, "retry-after"));
  return new BlobRequestError(response.statusCode, `HTTP ${response.statusCode}${detail ? `: ${detail}` : ""}`, retryAfterMs);
}

function networkError(err: unknown): unknown {
  if ((err as Error).name === "AbortError" || err instanceof BlobRequestError) return err;
  const code = (err as { code?: string }).code;
  return new BlobRequestError(0, `network error: ${(err as Error).message}${code ? ` (${code})` : ""}`);
}
