import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { pipeline } from "node:stream";
import type { FastifyBaseLogger } from "fastify";
import type { CkptService } from "../../domain/service.js";
import { errorJson } from "../error-body.js";
import type { BlobStat, ServableBlobStore } from "../../domain/blob-serving.js";
import { BLOB_ROUTE_PREFIX, encodeKeyPath } from "../blob-urls.js";
import type { UrlSigner } from "../url-signing.js";
import type { ServerMetrics } from "../metrics.js";
import { REQUEST_ID_HEADER, REQUEST_ID_LOG_LABEL, requestIdOf } from "../plugins/request-id.js";
import { securityHeaders } from "../plugins/security-headers.js";
import { parseRangeHeader } from "../range.js";

/**
 * Presigned downloads of the embedded blob store: GET and HEAD of /blobs/<key>. Authorised by
 * the URL alone: the signature covers method, the exact file and the expiry. The signature is
 * checked against the path re-encoded from the decoded key, so a client that encodes characters
 * differently still matches, while any change to the file named does not.
 *
 * This is the one hot path of the server, and it is answered on node:http directly, before
 * Fastify routes the request (see app.ts for the measurement that decided it). Everything the
 * framework would add is therefore done here: the security headers, the JSON error shape, the
 * 503 while draining and the request log line.
 */
export interface BlobDownloadOptions {
  service: CkptService;
  signer: UrlSigner;
  blobs: ServableBlobStore;
  /**
   * nginx's X-Accel-Redirect: verify the URL and the preconditions here, then name the file under
   * this internal location (no trailing slash) and let nginx send the bytes. Absent: ckpt sends them.
   */
  accelRedirect?: string;
  hsts?: boolean;
  logger?: FastifyBaseLogger;
  /** Counted like Fastify's routes, under the route `/blobs/*`. */
  metrics?: ServerMetrics;
  /** True once the server is draining (SIGTERM): new requests get 503, as Fastify answers them. */
  isClosing(): boolean;
}

/**
 * Up to this many bytes are read with one blocking read into one buffer and sent with one write.
 * For a file in the page cache that costs microseconds, while each asynchronous fs call is a
 * round trip through libuv's thread pool (a wake-up of a pool thread and one of the event loop):
 * the serving benchmark measured those round trips, not the reads, as the cost of a small GET.
 * Larger reads stream asynchronously, so a cold multi-GiB file never stalls the event loop.
 */
const BLOCKING_READ_MAX_BYTES = 256 << 10;

/** The route template downloads are counted under (as Fastify declares it, see app.ts). */
const BLOB_ROUTE = "/blobs/*";

/** The requests blobDownloadHandler answers. */
export function isBlobDownload(req: IncomingMessage): boolean {
  return (req.method === "GET" || req.method === "HEAD") && req.url !== undefined && req.url.startsWith(BLOB_ROUTE_PREFIX);
}

/**
 * The ETag nginx's static module sends for a file (hex mtime in seconds, hex size). Behind nginx
 * the client sees nginx's ETag, and nginx checks If-Match and If-Range against it, so ckpt's own
 * checks must use the same one to agree. It is weaker than ckpt's (a replacement of the same size
 * within the same second keeps it), which is why ckpt uses its own when it sends the bytes itself.
 */
function nginxEtag(stat: BlobStat): string {
  return `"${Math.floor(stat.lastModified.getTime() / 1000).toString(16)}-${stat.sizeBytes.toString(16)}"`;
}

/** Whether a list of entity tags (If-Match, If-None-Match) names `etag`, or "*" when `star` counts. */
function listNames(header: string, etag: string, star: boolean): boolean {
  if (header === etag) return true;
  for (const raw of header.split(",")) {
    const tag = raw.trim();
    if (tag === etag || (star && tag === "*")) return true;
  }
  return false;
}

export function blobDownloadHandler(options: BlobDownloadOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { service, signer, blobs, accelRedirect, logger } = options;
  const security = securityHeaders({ hsts: options.hsts });
  const errorHeaders = { ...security, "cache-control": "no-store", "content-type": "application/json; charset=utf-8" };
  const logRequests = logger !== undefined && ["trace", "debug", "info"].includes(logger.level);

  function sendError(res: ServerResponse, status: number, code: string, message: string, headers: OutgoingHttpHeaders = errorHeaders): void {
    const body = errorJson(code, message, res.getHeader(REQUEST_ID_HEADER) as string);
    res.writeHead(status, { ...headers, "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
    res.end(body);
  }

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (options.isClosing()) {
      res.shouldKeepAlive = false;
      return sendError(res, 503, "SERVICE_UNAVAILABLE", "the server is shutting down", { ...errorHeaders, connection: "close" });
    }
    const rawUrl = req.url!;
    const q = rawUrl.indexOf("?");
    const encodedKey = q === -1 ? rawUrl.slice(BLOB_ROUTE_PREFIX.length) : rawUrl.slice(BLOB_ROUTE_PREFIX.length, q);
    let key = encodedKey;
    if (encodedKey.includes("%")) {
      try {
        key = encodedKey.split("/").map(decodeURIComponent).join("/");
      } catch {
        return sendError(res, 400, "BAD_REQUEST", "malformed percent-encoding in the URL path");
      }
    }
    const check = signer.check("GET", BLOB_ROUTE_PREFIX + encodeKeyPath(key), new URLSearchParams(q === -1 ? "" : rawUrl.slice(q + 1)));
    if (check !== "ok") {
      return check === "expired"
        ? sendError(res, 403, "URL_EXPIRED", "this presigned URL has expired")
        : sendError(res, 403, "SIGNATURE_MISMATCH", "invalid presigned URL signature");
    }
    const file = await service.fileForBlobKey(key);
    const blob = file ? blobs.openForDownload(key) : null;
    if (!file || !blob) return sendError(res, 404, "NOT_FOUND", "file not found");

    let owned = true; // the descriptor, until a read or a stream takes it over
    try {
      const { stat } = blob;
      const etag = accelRedirect === undefined ? stat.etag : nginxEtag(stat);
      const lastModified = stat.lastModified.toUTCString();
      const headers: OutgoingHttpHeaders = {
        ...security,
        "accept-ranges": "bytes",
        etag,
        "last-modified": lastModified,
        "content-type": "application/octet-stream",
        "cache-control": "private, max-age=0",
      };
      if (file.sha256) headers["x-ckpt-sha256"] = file.sha256;

      const ifMatch = req.headers["if-match"];
      if (ifMatch !== undefined && ifMatch !== "*" && !listNames(ifMatch, etag, false))
        return sendError(res, 412, "PRECONDITION_FAILED", "the file changed (If-Match did not match)", headers);
      const ifNoneMatch = req.headers["if-none-match"];
      if (ifNoneMatch !== undefined && listNames(ifNoneMatch, etag, true)) {
        delete headers["content-type"];
        res.writeHead(304, headers);
        return void res.end();
      }

      if (accelRedirect !== undefined) {
        // nginx answers Range, If-Range and HEAD from the file itself, and checks If-Match again
        // against the file it opens (the same ETag, see nginxEtag), closing the gap between
        // this check and its read. It keeps only some upstream headers (see README).
        headers["x-accel-redirect"] = `${accelRedirect}/${encodeKeyPath(key)}`;
        delete headers["accept-ranges"]; // nginx adds its own, and would send both
        // An explicit empty body: without it Node.js sends a chunked one, and nginx then closes
        // its upstream connection after a redirect instead of reusing it (measured: a new TCP
        // connection to ckpt per download).
        headers["content-length"] = 0;
        res.writeHead(200, headers);
        return void res.end();
      }

      // If-Range: a range is honoured only for the representation the client already has parts of.
      const ifRange = req.headers["if-range"];
      const rangeHeader = ifRange === undefined || ifRange === etag || ifRange === lastModified ? req.headers.range : undefined;
      const range = parseRangeHeader(rangeHeader, stat.sizeBytes);
      if (range.kind === "unsatisfiable") {
        headers["content-range"] = `bytes */${stat.sizeBytes}`;
        return sendError(res, 416, "RANGE_NOT_SATISFIABLE", "range not satisfiable", headers);
      }
      let status = 200;
      let start = 0;
      let end = stat.sizeBytes - 1;
      if (range.kind === "partial") {
        status = 206;
        ({ start, end } = range);
        headers["content-range"] = `bytes ${start}-${end}/${stat.sizeBytes}`;
      }
      const length = end - start + 1;
      headers["content-length"] = length;
      if (req.method === "HEAD" || length === 0) {
        res.writeHead(status, headers);
        return void res.end();
      }
      if (length <= BLOCKING_READ_MAX_BYTES) {
        owned = false;
        const bytes = blobs.readOpened(blob, start, end);
        res.writeHead(status, headers);
        return void res.end(bytes);
      }
      owned = false;
      const stream = blobs.streamOpened(blob, start, end);
      res.writeHead(status, headers);
      pipeline(stream, res, (err) => {
        if (err && !res.destroyed) logger?.warn({ [REQUEST_ID_LOG_LABEL]: res.getHeader(REQUEST_ID_HEADER), err }, "download failed mid-response");
      });
    } finally {
      if (owned) blobs.closeOpened(blob);
    }
  }

  const { metrics } = options;
  return (req, res) => {
    const requestId = requestIdOf(req);
    res.setHeader(REQUEST_ID_HEADER, requestId);
    const started = logRequests || metrics ? performance.now() : 0;
    if (logRequests)
      res.once("finish", () =>
        logger!.info(
          {
            [REQUEST_ID_LOG_LABEL]: requestId,
            req: { method: req.method, url: req.url, ip: req.socket.remoteAddress },
            res: { statusCode: res.statusCode },
            responseTime: performance.now() - started,
          },
          "request completed",
        ),
      );
    if (metrics)
      res.once("close", () => {
        const head = req.method === "HEAD" || res.statusCode === 304;
        const bytesOut = res.writableFinished && !head ? Number(res.getHeader("content-length")) || 0 : 0;
        metrics.observeRequest(req.method!, BLOB_ROUTE, res.statusCode, (performance.now() - started) / 1000, 0, bytesOut);
      });
    answer(req, res).catch((err: unknown) => {
      logger?.error({ [REQUEST_ID_LOG_LABEL]: requestId, err }, "unhandled error");
      if (res.headersSent) res.destroy();
      else sendError(res, 500, "INTERNAL", "internal server error");
    });
  };
}
