import { Type } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { MAX_FILE_BYTES, type CkptService } from "../../domain/service.js";
import { callerOf } from "../plugins/auth.js";
import { presentCheckpointFile } from "../present.js";
import { MAX_NODE_RANK } from "../../domain/names.js";
import { CheckpointFile, ErrorResponse, JobParams, errorResponses } from "../schemas.js";

const UploadParams = Type.Object({
  training_project_id: Type.String({ minLength: 1, maxLength: 128 }),
  training_job_id: Type.String({ minLength: 1, maxLength: 128 }),
  upload_id: Type.String({ minLength: 1, maxLength: 64 }),
});

/**
 * Direct uploads (ckpt extension): the bytes go from the client straight to the blob store —
 * S3 presigned URLs, or this server's own upload route on the embedded store — never through
 * an API worker. Three calls: begin (get part URLs), PUT each part, complete (verify + commit).
 */
export const uploadRoutes: FastifyPluginAsyncTypebox<{ service: CkptService }> = async (app, { service }) => {
  app.post(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id/uploads",
    {
      schema: {
        summary: "Begin a direct upload of one checkpoint file (ckpt extension).",
        description:
          "Answers the URLs to PUT the file's parts to, in any order and in parallel (each part exactly " +
          "`size_bytes` long; keep each response's ETag header), then call `.../uploads/{upload_id}/complete`. " +
          "Nothing is visible until the completion verifies the size (and `sha256`, when given). URLs expire " +
          "with `expires_at` (at most 24 h); uploads not completed by then are aborted and cleaned.",
        tags: ["checkpoint files"],
        params: JobParams,
        body: Type.Object({
          node_rank: Type.Integer({ minimum: 0, maximum: MAX_NODE_RANK }),
          relative_file_name: Type.String({ minLength: 1, maxLength: 4096 }),
          size_bytes: Type.Integer({ minimum: 0, maximum: MAX_FILE_BYTES }),
          sha256: Type.Optional(Type.Union([Type.String(), Type.Null()])),
        }),
        response: {
          200: Type.Object({
            upload_id: Type.String(),
            part_size_bytes: Type.Integer(),
            parts: Type.Array(Type.Object({ part_number: Type.Integer(), url: Type.String(), size_bytes: Type.Integer() })),
            expires_at: Type.String({ format: "date-time" }),
            parts_via_api_server: Type.Boolean({
              description:
                "true when the part URLs are this API server's own (the embedded store): the bytes pass through it " +
                "either way, so one streamed `PUT .../checkpoint_files/{node_rank}/{name}` does the same in one request",
            }),
          }),
          409: Type.Ref(ErrorResponse),
          507: Type.Ref(ErrorResponse),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { training_project_id: projectId, training_job_id: jobId } = request.params;
      const b = request.body;
      const { upload, plan } = await service.beginUpload(
        callerOf(request),
        { projectId, jobId, nodeRank: b.node_rank, relativeName: b.relative_file_name },
        { sizeBytes: b.size_bytes, sha256: b.sha256 ?? null },
      );
      return {
        upload_id: upload.uploadId,
        part_size_bytes: plan.partSizeBytes,
        parts: plan.parts.map((p) => ({ part_number: p.partNumber, url: p.url, size_bytes: p.sizeBytes })),
        expires_at: upload.expiresAt,
        parts_via_api_server: service.capabilities.partsViaApiServer,
      };
    },
  );

  app.post(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id/uploads/:upload_id/complete",
    {
      schema: {
        summary: "Complete a direct upload: verify it and make the file visible (ckpt extension).",
        description:
          "Verifies the size and the SHA-256 (declared when the upload began, or here) before the file becomes " +
          "visible; a digest given in both places must be the same.",
        tags: ["checkpoint files"],
        params: UploadParams,
        body: Type.Object({
          parts: Type.Array(Type.Object({ part_number: Type.Integer({ minimum: 1, maximum: 10000 }), etag: Type.String({ maxLength: 256 }) }), {
            maxItems: 10000,
          }),
          // Lets a client hash while it sends instead of before: verified like one given at the start.
          sha256: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: "lowercase hex SHA-256 of the file, if not declared when the upload began" })),
        }),
        response: { 201: Type.Ref(CheckpointFile), 409: Type.Ref(ErrorResponse), 507: Type.Ref(ErrorResponse), ...errorResponses },
      },
    },
    async (request, reply) => {
      const { training_project_id: projectId, training_job_id: jobId, upload_id: uploadId } = request.params;
      const file = await service.completeUpload(
        callerOf(request),
        projectId,
        jobId,
        uploadId,
        request.body.parts.map((p) => ({ partNumber: p.part_number, etag: p.etag })),
        request.body.sha256 ?? null,
      );
      const url = service.presignFile(projectId, file);
      return reply.status(201).send(presentCheckpointFile(file, url));
    },
  );

  app.delete(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id/uploads/:upload_id",
    {
      schema: {
        summary: "Abort a direct upload (ckpt extension).",
        tags: ["checkpoint files"],
        params: UploadParams,
        response: { 200: Type.Object({ upload_id: Type.String(), aborted: Type.Boolean() }), ...errorResponses },
      },
    },
    async (request) => {
      const { training_project_id: projectId, training_job_id: jobId, upload_id: uploadId } = request.params;
      await service.abortUpload(callerOf(request), projectId, jobId, uploadId);
      return { upload_id: uploadId, aborted: true };
    },
  );
};
