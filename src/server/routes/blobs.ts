import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import type { CkptService } from "../../domain/service.js";
import { LOCAL_BLOB_ROUTE_PREFIX, LOCAL_UPLOAD_ROUTE_PREFIX, LocalBlobStore, encodeKeyPath } from "../../stores/blobs/local.js";
import { BlobIntegrityError, BlobNoSpaceError } from "../../stores/blobs/store.js";
import type { UrlSigner } from "../../stores/blobs/url-signing.js";
import { parseRangeHeader } from "../range.js";

/**
 * Presigned downloads of the embedded blob store. Authorised by the URL alone: the signature
 * covers method, the exact file and the expiry. The signature is checked against the path
 * re-encoded from the decoded key, so a client that encodes characters differently still
 * matches, while any change to the file named does not.
 */
/** Error bodies are JSON even after the byte headers of a download were set. */
function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.status(status).header("content-type", "application/json; charset=utf-8").send(JSON.stringify({ message, code }));
}

export const blobRoutes: FastifyPluginAsync<{ service: CkptService; signer: UrlSigner }> = async (app, { service, signer }) => {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const rawUrl = request.raw.url ?? "";
    const q = rawUrl.indexOf("?");
    const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
    const query = new URLSearchParams(q === -1 ? "" : rawUrl.slice(q + 1));
    let key: string;
    try {
      key = rawPath.slice(LOCAL_BLOB_ROUTE_PREFIX.length).split("/").map(decodeURIComponent).join("/");
    } catch {
      return reply.status(400).send({ message: "malformed percent-encoding in the URL path", code: "BAD_REQUEST" });
    }
    const check = signer.check("GET", LOCAL_BLOB_ROUTE_PREFIX + encodeKeyPath(key), query);
    if (check !== "ok") {
      const message = check === "expired" ? "this presigned URL has expired" : "invalid presigned URL signature";
      return reply.status(403).send({ message, code: check === "expired" ? "URL_EXPIRED" : "SIGNATURE_MISMATCH" });
    }
    const file = await service.fileForBlobKey(key);
    const stat = file ? await service.blobs.stat(key) : null;
    if (!file || !stat) return reply.status(404).send({ message: "file not found", code: "NOT_FOUND" });

    const lastModified = stat.lastModified.toUTCString();
    reply.header("accept-ranges", "bytes");
    reply.header("etag", stat.etag);
    reply.header("last-modified", lastModified);
    reply.header("content-type", "application/octet-stream");
    reply.header("cache-control", "private, max-age=0");
    if (file.sha256) reply.header("x-ckpt-sha256", file.sha256);

    const ifMatch = request.headers["if-match"];
    if (ifMatch !== undefined && ifMatch !== "*" && !ifMatch.split(",").some((t) => t.trim() === stat.etag))
      return fail(reply, 412, "PRECONDITION_FAILED", "the file changed (If-Match did not match)");
    const ifNoneMatch = request.headers["if-none-match"];
    if (ifNoneMatch !== undefined && ifNoneMatch.split(",").some((t) => t.trim() === stat.etag || t.trim() === "*"))
      return reply.status(304).removeHeader("content-type").send();

    // If-Range: a range is honoured only for the representation the client already has parts of.
    const ifRange = request.headers["if-range"];
    const rangeHeader = ifRange === undefined || ifRange === stat.etag || ifRange === lastModified ? request.headers.range : undefined;
    const range = parseRangeHeader(rangeHeader, stat.sizeBytes);
    if (range.kind === "unsatisfiable") {
      reply.header("content-range", `bytes */${stat.sizeBytes}`);
      return fail(reply, 416, "RANGE_NOT_SATISFIABLE", "range not satisfiable");
    }
    const isHead = request.method === "HEAD";
    if (range.kind === "partial") {
      reply.status(206);
      reply.header("content-range", `bytes ${range.start}-${range.end}/${stat.sizeBytes}`);
      reply.header("content-length", range.end - range.start + 1);
      return isHead ? reply.send() : reply.send(await service.blobs.read(key, range));
    }
    reply.header("content-length", stat.sizeBytes);
    if (isHead || stat.sizeBytes === 0) return reply.send();
    // Bounded, so the stream reads exactly the file: without an end each read allocates a whole
    // 1 MiB buffer (twice for a small file), which the serving benchmark showed dominating CPU.
    return reply.send(await service.blobs.read(key, { start: 0, end: stat.sizeBytes - 1 }));
  };

  // HEAD is registered explicitly so it shares the GET handler's signature check.
  app.route({ method: ["GET", "HEAD"], url: `${LOCAL_BLOB_ROUTE_PREFIX}*`, handler, exposeHeadRoute: false });

  // Parts of direct uploads: the body streams to its offset in the upload's file, unbuffered.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, payload, done) => done(null, payload));
  app.put<{ Params: { uploadId: string; partNumber: string } }>(`${LOCAL_UPLOAD_ROUTE_PREFIX}:uploadId/:partNumber`, async (request, reply) => {
    const rawUrl = request.raw.url ?? "";
    const q = rawUrl.indexOf("?");
    const { uploadId, partNumber } = request.params;
    const path = `${LOCAL_UPLOAD_ROUTE_PREFIX}${uploadId}/${partNumber}`;
    const check = signer.check("PUT", path, new URLSearchParams(q === -1 ? "" : rawUrl.slice(q + 1)));
    if (check !== "ok")
      return fail(reply, 403, check === "expired" ? "URL_EXPIRED" : "SIGNATURE_MISMATCH", check === "expired" ? "this presigned URL has expired" : "invalid presigned URL signature");
    const upload = await service.uploadForPart(uploadId);
    if (!upload || !(service.blobs instanceof LocalBlobStore)) return fail(reply, 404, "NOT_FOUND", "no such upload (completed, aborted or expired)");
    try {
      const etag = await service.blobs.writeDirectUploadPart(upload, Number(partNumber), request.raw);
      return reply.status(200).header("etag", etag).send();
    } catch (err) {
      if (err instanceof BlobIntegrityError) return fail(reply, 400, "BAD_REQUEST", err.message);
      if (err instanceof BlobNoSpaceError) return fail(reply, 507, "INSUFFICIENT_STORAGE", err.message);
      throw err;
    }
  });
};
