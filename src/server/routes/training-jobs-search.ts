import { Type, type TSchema } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { MAX_SEARCH_RESULTS, type CkptService } from "../../domain/service.js";
import { JOB_SEARCH_ORDER_FIELDS, JOB_STATUSES } from "../../domain/types.js";
import { callerOf } from "../plugins/auth.js";
import { presentJob } from "../present.js";
import { TrainingJobV1, errorResponses } from "../schemas.js";

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/**
 * Baseten's SearchTrainingJobsRequestV1, property for property. Values are plain strings here,
 * as in Baseten's schema; the domain refuses unknown statuses and order fields with a message
 * that lists the allowed ones. Unknown properties are refused (a misspelt filter must not
 * silently match every job).
 */
const SearchTrainingJobsRequestV1 = Type.Object(
  {
    project_id: Type.Optional(Nullable(Type.String({ maxLength: 128, description: "Filter the training jobs by project ID." }))),
    job_id: Type.Optional(Nullable(Type.String({ maxLength: 128, description: "Filter the training jobs by job ID." }))),
    statuses: Type.Optional(
      Nullable(
        Type.Array(Type.String({ maxLength: 64 }), {
          maxItems: 64,
          description: `Filter the training jobs by status (any of them): ${JOB_STATUSES.join(", ")}. An empty list filters nothing.`,
        }),
      ),
    ),
    order_by: Type.Optional(
      Type.Array(
        Type.Object(
          {
            field: Type.String({ maxLength: 64, description: `One of: ${JOB_SEARCH_ORDER_FIELDS.join(", ")}.` }),
            order: Type.String({ maxLength: 16, description: "asc or desc." }),
          },
          { additionalProperties: false },
        ),
        { maxItems: 16, default: [{ field: "created_at", order: "desc" }], description: "The first entry decides the order." },
      ),
    ),
  },
  { additionalProperties: false },
);

export const trainingJobsSearchRoute: FastifyPluginAsyncTypebox<{ service: CkptService }> = async (app, { service }) => {
  app.post(
    "/v1/training_jobs/search",
    {
      schema: {
        summary: "Search training jobs.",
        description:
          "Search the training jobs of the caller's organisation (Baseten's SearchTrainingJobsRequestV1): filters combine with AND; " +
          `ordered by created_at (newest first unless order_by says asc); at most ${MAX_SEARCH_RESULTS} jobs, the first ones in that order.`,
        tags: ["training jobs"],
        body: SearchTrainingJobsRequestV1,
        response: { 200: Type.Object({ training_jobs: Type.Array(Type.Ref(TrainingJobV1)) }), ...errorResponses },
      },
    },
    async (request) => {
      const b = request.body;
      const found = await service.searchJobs(callerOf(request), {
        projectId: b.project_id,
        jobId: b.job_id,
        statuses: b.statuses,
        orderBy: b.order_by,
      });
      return { training_jobs: found.map(({ job, project }) => presentJob(job, project)) };
    },
  );
};
