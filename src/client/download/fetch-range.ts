import type { FileHandle } from "node:fs/promises";
import { get, type BodyPlan, type ConnectionPool, type GetResult, type ResponseHead } from "../transfer/get.js";
import { DEFAULT_IDLE_TIMEOUT_MS, TransferError, translate } from "../transfer/http.js";
import { BlobRequestError, RangeNotHonouredError, RemoteChangedError } from "./errors.js";
import { parseRetryAfter } from "./retry.js";
import { isSha256Hex } from "../../domain/digests.js";

const MAX_REDIRECTS = 5;
/** Error bodies are read for the server's words up to this much. */
const ERROR_BODY_BYTES = 64 << 10;

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
  pool: ConnectionPool;
  signal: AbortSignal;
  /** No byte for this long fails the request (then it is retried). */
  idleTimeoutMs?: number;
  /** Sees the response's validators before any byte is written; throws to refuse the body. */
  onValidators(etag: string | undefined, sha256: string | undefined): void;
  /** Called after each write with the number of bytes now on disk (in order, from `start`). */
  onWritten(bytes: number): void;
}

/**
 * One ranged GET of a presigned URL, its body written at its offsets as it arrives (see
 * transfer/get.ts). Uses nothing but GET and Range (no HEAD, no ckpt-only header), so it works
 * on S3 presigned URLs too; follows redirects (S3 answers 301/307 for a bucket in another
 * region, to another host). A body cut short throws after writing what arrived, so a retry
 * continues from there. Throws BlobRequestError (status 0 when no usable answer came),
 * RemoteChangedError, RangeNotHonouredError or AbortError.
 */
export async function fetchRangeInto(req: RangeRequest): Promise<void> {
  const headers: Record<string, string> = { range: `bytes=${req.start}-${req.end}` };
  if (req.ifMatch) headers["if-match"] = req.ifMatch;
  const expected = req.end - req.start + 1;
  let url = req.url;
  for (let hops = 0; ; hops++) {
    let written = 0;
    let result: GetResult;
    try {
      result = await get({
        url,
        headers,
        pool: req.pool,
        signal: req.signal,
        idleTimeoutMs: req.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        onHead: (head) => planBody(head, req, (bytes) => {
          written += bytes;
          req.onWritten(bytes);
        }),
      });
    } catch (err) {
      if ((err as Error).name === "AbortError" || err instanceof BlobRequestError || err instanceof RemoteChangedError || err instanceof RangeNotHonouredError) throw err;
      const why = err instanceof TransferError ? err : translate(err);
      throw new BlobRequestError(0, written > 0 || (why as TransferError).code === "ETIMEDOUT" ? `${why.message} after ${written} of ${expected} bytes` : why.message);
    }
    const status = result.status;
    if (status === 200 || status === 206) {
      if (written !== expected) throw new BlobRequestError(0, `the connection closed after ${written} of ${expected} bytes`);
      return;
    }
    const location = result.headers.get("location");
    if (isRedirect(status) && location !== undefined) {
      if (hops >= MAX_REDIRECTS) throw new BlobRequestError(status, `more than ${MAX_REDIRECTS} redirects`);
      try {
        url = new URL(location, url).href;
      } catch {
        throw new BlobRequestError(status, "a redirect to an invalid location");
      }
      continue;
    }
    throw statusError(result);
  }
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

/** What to do with an answer's body: the range's bytes go to the file, once the head checks out. */
function planBody(head: ResponseHead, req: RangeRequest, onWritten: (bytes: number) => void): BodyPlan {
  const { status, headers } = head;
  if (isRedirect(status) && headers.has("location")) return { kind: "ignore" };
  if (status !== 200 && status !== 206) return { kind: "text", limit: ERROR_BODY_BYTES };
  checkRange(status, headers, req);
  req.onValidators(headers.get("etag"), sha256Of(headers));
  return { kind: "file", fd: req.handle.fd, position: req.start, length: req.end - req.start + 1, onWritten };
}

/**
 * A 206 must be exactly the range asked for, of a file of the listed size, with a matching
 * length; a 200 is the whole file, acceptable only if that is what was asked for.
 */
function checkRange(status: number, headers: Map<string, string>, req: RangeRequest): void {
  const length = headers.get("content-length");
  if (status === 206) {
    const m = /^bytes ([0-9]+)-([0-9]+)\/([0-9]+|\*)$/.exec(headers.get("content-range") ?? "");
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
function sha256Of(headers: Map<string, string>): string | undefined {
  const value = (headers.get("x-ckpt-sha256") ?? headers.get("x-amz-meta-sha256"))?.trim().toLowerCase();
  return isSha256Hex(value) ? value : undefined;
}

/** The server's own words on a failed request (JSON `message`, S3 XML `<Message>`), never the URL. */
function statusError(result: GetResult): BlobRequestError {
  const status = result.status;
  const text = result.text?.toString("utf8").slice(0, 2000) ?? "";
  let detail: string | undefined;
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === "string") detail = parsed.message;
  } catch {
    detail = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
  }
  const retryAfterMs = parseRetryAfter(result.headers.get("retry-after"));
  return new BlobRequestError(status, `HTTP ${status}${detail ? `: ${detail}` : ""}`, retryAfterMs);
}
