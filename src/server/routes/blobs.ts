import type { FastifyPluginAsync, FastifyReply } from "fastify";
import type { CkptService } from "../../domain/service.js";
import { errorJson } from "../error-body.js";
import { translateBlobErrors } from "../../domain/blob-errors.js";
import type { ServableBlobStore } from "../../domain/blob-serving.js";
import { BLOB_ROUTE_PREFIX, UPLOAD_PART_ROUTE_PREFIX, uploadPartPath } from "../blob-urls.js";
import type { UrlSigner } from "../url-signing.js";

/** Error bodies are JSON even after the byte headers of a download were set. */
function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.status(status).header("content-type", "application/json; charset=utf-8").send(errorJson(code, message));
}

export const blobRoutes: FastifyPluginAsync<{ service: CkptService; signer: UrlSigner; blobs: ServableBlobStore }> = async (app, { service, signer, blobs }) => {
  // Parts of direct uploads: the body streams to its offset in the upload's file, unbuffered.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, payload, done) => done(null, payload));
  app.put<{ Params: { uploadId: string; partNumber: string } }>(`${UPLOAD_PART_ROUTE_PREFIX}:uploadId/:partNumber`, async (request, reply) => {
    const rawUrl = request.raw.url ?? "";
    const q = rawUrl.indexOf("?");
    const { uploadId, partNumber } = request.params;
    const check = signer.check("PUT", uploadPartPath(uploadId, partNumber), new URLSearchParams(q === -1 ? "" : rawUrl.slice(q + 1)));
    if (check !== "ok")
      return fail(reply, 403, check === "expired" ? "URL_EXPIRED" : "SIGNATURE_MISMATCH", check === "expired" ? "this presigned URL has expired" : "invalid presigned URL signature");
    const upload = await service.uploadForPart(uploadId);
    if (!upload) return fail(reply, 404, "NOT_FOUND", "no such upload (completed, aborted or expired)");
    // A bad part is a 400, a full disk a 507: the domain's errors, answered by the error handler.
    const etag = await translateBlobErrors(() => blobs.writeDirectUploadPart(upload, Number(partNumber), request.raw));
    return reply.status(200).header("etag", etag).send();
  });

  // A download URL is signed for GET (HEAD answers its headers); any other method on it is the
  // wrong verb, not a missing route. Answered before the body is read, so nothing is written.
  // Upload parts (PUT under the uploads prefix) match their own, more specific route above.
  app.route({
    method: ["PUT", "POST", "PATCH", "DELETE"],
    url: `${BLOB_ROUTE_PREFIX}*`,
    schema: { hide: true },
    handler: async (request, reply) =>
      fail(reply.header("allow", "GET, HEAD"), 405, "METHOD_NOT_ALLOWED", `presigned download URLs answer GET and HEAD only, not ${request.method}`),
  });
};
