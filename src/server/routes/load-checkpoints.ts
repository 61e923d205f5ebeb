import { Type } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { resolveLoadCheckpoints } from "../../domain/load-checkpoints.js";
import type { CkptService } from "../../domain/service.js";
import { callerOf } from "../plugins/auth.js";
import { ErrorResponse, JobParams, errorResponses } from "../schemas.js";

const LoadCheckpointPlan = Type.Object(
  {
    enabled: Type.Boolean(),
    download_folder: Type.String({ description: "Where the checkpoints go: `<download_folder>/rank-<node_rank>/<relative_file_name>`." }),
    checkpoints: Type.Array(
      Type.Object({
        typ: Type.Union([Type.Literal("baseten_latest_checkpoint"), Type.Literal("baseten_named_checkpoint")]),
        training_project_id: Type.String(),
        training_job_id: Type.String(),
        checkpoint_id: Type.Union([Type.String(), Type.Null()], { description: "null: the job's latest checkpoint." }),
      }),
    ),
  },
  { title: "LoadCheckpointPlan" },
);

export const loadCheckpointRoutes: FastifyPluginAsyncTypebox<{ service: CkptService }> = async (app, { service }) => {
  app.get(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id/load_checkpoint_config",
    {
      schema: {
        summary: "The checkpoints a job loads before it starts (ckpt extension).",
        description:
          "Resolves the job's `runtime.load_checkpoint_config` (Baseten's LoadCheckpointConfig, as given when the job was " +
          "created) into the jobs and checkpoints to download; `ckpt run` asks for it before starting the command. " +
          "422 `CHECKPOINT_NOT_FOUND` when a referenced checkpoint, job or project does not exist, " +
          "422 `INVALID_LOAD_CHECKPOINT_CONFIG` when the config cannot be used.",
        tags: ["training jobs"],
        params: JobParams,
        response: { 200: LoadCheckpointPlan, ...errorResponses, 422: Type.Ref(ErrorResponse) },
      },
    },
    async (request) => {
      const plan = await resolveLoadCheckpoints(service, callerOf(request), request.params.training_project_id, request.params.training_job_id);
      return {
        enabled: plan.enabled,
        download_folder: plan.downloadFolder,
        checkpoints: plan.checkpoints.map((c) => ({
          typ: c.typ,
          training_project_id: c.trainingProjectId,
          training_job_id: c.trainingJobId,
          checkpoint_id: c.checkpointId,
        })),
      };
    },
  );
};
