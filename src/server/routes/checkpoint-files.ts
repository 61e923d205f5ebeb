import { Type } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { badRequest } from "../../domain/errors.js";
import { parseNodeRank } from "../../domain/names.js";
import type { CkptService } from "../../domain/service.js";
import { callerOf } from "../plugins/auth.js";
import { presentCheckpointFile } from "../present.js";
import { CheckpointFile, ErrorResponse, GetTrainingJobCheckpointFilesResponseV1, JobParams, errorResponses, rejectNonIntegerPaging } from "../schemas.js";

export const listCheckpointFilesRoute: FastifyPluginAsyncTypebox<{ service: CkptService; maxPageSize: number }> = async (
  app,
  { service, maxPageSize },
) => {
  app.get(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id/checkpoint_files",
    {
      schema: {
        summary: "Get training job checkpoint files.",
        description:
          "Get presigned URLs for all checkpoint files for a training job. Pages are offsets into a stable " +
          `order (first upload order; a replaced file keeps its place). page_size above ${maxPageSize} is clamped.`,
        tags: ["checkpoint files"],
        params: JobParams,
        querystring: Type.Object({
          page_size: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, default: 1000, description: "Max files per page (default 1000)." }),
          page_token: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0, description: "Offset into the file list (default 0)." }),
        }),
        response: { 200: Type.Ref(GetTrainingJobCheckpointFilesResponseV1), ...errorResponses },
      },
      preValidation: rejectNonIntegerPaging,
    },
    async (request) => {
      const { training_project_id: p, training_job_id: j } = request.params;
      const page = await service.listFiles(callerOf(request), p, j, request.query.page_token, request.query.page_size);
      return {
        presigned_urls: page.files.map(({ file, url }) => presentCheckpointFile(file, url)),
        next_page_token: page.nextPageToken,
        total_count: page.totalCount,
      };
    },
  );
};

/**
 * Uploads stream straight from the socket to the blob store, so this scope replaces Fastify's
 * body parsers with one that hands the raw request stream through untouched (no size limit of
 * the JSON routes applies, and nothing is buffered).
 */
export const uploadCheckpointFileRoute: FastifyPluginAsyncTypebox<{ service: CkptService }> = async (app, { service }) => {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, payload, done) => done(null, payload));

  app.put(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id/checkpoint_files/:node_rank/*",
    {
      schema: {
        summary: "Upload one checkpoint file (ckpt extension).",
        description:
          "Streams the body to the blob store as the file `relative_file_name` (the rest of the path) of node " +
          "`node_rank`. The file becomes visible to listing only once its bytes are complete and durable. " +
          "Re-uploading a name replaces it, keeping its place in the listing. Send `Content-Length` to have a " +
          "short body rejected, and `x-ckpt-sha256` (lowercase hex) to have the digest verified.",
        tags: ["checkpoint files"],
        params: Type.Object({
          training_project_id: Type.String({ minLength: 1, maxLength: 128 }),
          training_job_id: Type.String({ minLength: 1, maxLength: 128 }),
          node_rank: Type.String(),
          "*": Type.String(),
        }),
        headers: Type.Object({ "x-ckpt-sha256": Type.Optional(Type.String()) }),
        response: { 201: Type.Ref(CheckpointFile), 409: Type.Ref(ErrorResponse), 507: Type.Ref(ErrorResponse), ...errorResponses },
      },
    },
    async (request, reply) => {
      const { training_project_id: projectId, training_job_id: jobId } = request.params;
      const nodeRank = parseNodeRank(request.params.node_rank);
      const relativeName = request.params["*"];
      const lengthHeader = request.headers["content-length"];
      let contentLength: number | undefined;
      if (lengthHeader !== undefined) {
        if (!/^[0-9]{1,16}$/.test(lengthHeader)) throw badRequest("content-length must be a non-negative integer");
        contentLength = Number(lengthHeader);
      }
      const file = await service.putFile(
        callerOf(request),
        { projectId, jobId, nodeRank, relativeName },
        request.raw,
        { contentLength, sha256: request.headers["x-ckpt-sha256"] },
      );
      const url = service.presignFile(projectId, file);
      return reply.status(201).send(presentCheckpointFile(file, url));
    },
  );
};
