import type { FastifyPluginAsync, FastifyReply } from "fastify";
import type { CkptService } from "../../domain/service.js";
import { LOCAL_BLOB_ROUTE_PREFIX, LOCAL_UPLOAD_ROUTE_PREFIX, LocalBlobStore } from "../../stores/blobs/local.js";
import { BlobIntegrityError, BlobNoSpaceError } from "../../stores/blobs/store.js";
import type { UrlSigner } from "../../stores/blobs/url-signing.js";

/** Error bodies are JSON even after the byte headers of a download were set. */
function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.status(status).header("content-type", "application/json; charset=utf-8").send(JSON.stringify({ message, code }));
}

export const blobRoutes: FastifyPluginAsync<{ service: CkptService; signer: UrlSigner }> = async (app, { service, signer }) => {
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

  // A download URL is signed for GET (HEAD answers its headers); any other method on it is the
  // wrong verb, not a missing route. Answered before the body is read, so nothing is written.
  // Upload parts (PUT under the uploads prefix) match their own, more specific route above.
  app.route({
    method: ["PUT", "POST", "PATCH", "DELETE"],
    url: `${LOCAL_BLOB_ROUTE_PREFIX}*`,
    schema: { hide: true },
    handler: async (request, reply) =>
      fail(reply.header("allow", "GET, HEAD"), 405, "METHOD_NOT_ALLOWED", `presigned download URLs answer GET and HEAD only, not ${request.method}`),
  });
};
