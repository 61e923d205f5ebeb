import { Type } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { badRequest } from "../../domain/errors.js";
import type { CkptService } from "../../domain/service.js";
import { JOB_STATUSES, SYNC_STATUSES } from "../../domain/types.js";
import { callerOf } from "../plugins/auth.js";
import { presentCheckpoint, presentJob, presentProject } from "../present.js";
import { JobParams, ProjectParams, TrainingJobCheckpointV1, TrainingJobV1, TrainingProjectV1, errorResponses } from "../schemas.js";

const JobResponse = Type.Object({ training_job: Type.Ref(TrainingJobV1) });

export const jobRoutes: FastifyPluginAsyncTypebox<{ service: CkptService }> = async (app, { service }) => {
  app.post(
    "/v1/training_projects/:training_project_id/jobs",
    {
      schema: {
        summary: "Create a training job.",
        description:
          "Accepts Baseten's CreateTrainingJobV1 body (image, compute, runtime, ...) and keeps it verbatim; " +
          "`image` is optional here and `name` is optional. The job starts as TRAINING_JOB_CREATED.",
        tags: ["training jobs"],
        params: ProjectParams,
        body: Type.Object({
          training_job: Type.Object(
            {
              name: Type.Optional(Type.Union([Type.String({ maxLength: 1024 }), Type.Null()])),
              priority: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
              availability_model: Type.Optional(Type.Union([Type.Literal("dedicated"), Type.Literal("spot")])),
            },
            { additionalProperties: true },
          ),
        }),
        response: { 200: JobResponse, ...errorResponses },
      },
    },
    async (request) => {
      const { project, job } = await service.createJob(
        callerOf(request),
        request.params.training_project_id,
        request.body.training_job as Record<string, unknown>,
      );
      return { training_job: presentJob(job, project) };
    },
  );

  app.get(
    "/v1/training_projects/:training_project_id/jobs",
    {
      schema: {
        summary: "List a project's training jobs, newest first.",
        tags: ["training jobs"],
        params: ProjectParams,
        response: {
          200: Type.Object({ training_project: Type.Ref(TrainingProjectV1), training_jobs: Type.Array(Type.Ref(TrainingJobV1)) }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { project, jobs } = await service.listJobs(callerOf(request), request.params.training_project_id);
      return {
        training_project: presentProject(project, jobs[0] ?? null),
        training_jobs: jobs.map((job) => presentJob(job, project)),
      };
    },
  );

  app.get(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id",
    {
      schema: {
        summary: "Get a training job.",
        tags: ["training jobs"],
        params: JobParams,
        response: {
          200: Type.Object({ training_project: Type.Ref(TrainingProjectV1), training_job: Type.Ref(TrainingJobV1) }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const { training_project_id: p, training_job_id: j } = request.params;
      const { project, job } = await service.getJob(caller, p, j);
      const { latestJob } = await service.getProject(caller, p);
      return { training_project: presentProject(project, latestJob), training_job: presentJob(job, project) };
    },
  );

  app.patch(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id",
    {
      schema: {
        summary: "Update a training job: its priority (as on Baseten) or, from the training side, its status.",
        description:
          "ckpt extension: besides Baseten's `priority`, the training side reports progress here with " +
          "`current_status` (a TRAINING_JOB_* value), `error_message` and `checkpoint_sync_status`.",
        tags: ["training jobs"],
        params: JobParams,
        body: Type.Object({
          priority: Type.Optional(Type.Integer()),
          current_status: Type.Optional(Type.Union(JOB_STATUSES.map((s) => Type.Literal(s)))),
          error_message: Type.Optional(Type.Union([Type.String({ maxLength: 65536 }), Type.Null()])),
          checkpoint_sync_status: Type.Optional(Type.Union([...SYNC_STATUSES.map((s) => Type.Literal(s)), Type.Null()])),
        }),
        response: { 200: JobResponse, ...errorResponses },
      },
    },
    async (request) => {
      const b = request.body;
      if (b.priority === undefined && b.current_status === undefined && b.error_message === undefined && b.checkpoint_sync_status === undefined)
        throw badRequest("body must set at least one of priority, current_status, error_message, checkpoint_sync_status");
      const { training_project_id: p, training_job_id: j } = request.params;
      const caller = callerOf(request);
      const job = await service.updateJob(caller, p, j, {
        priority: b.priority,
        status: b.current_status,
        errorMessage: b.error_message,
        syncStatus: b.checkpoint_sync_status,
      });
      const { project } = await service.getJob(caller, p, j);
      return { training_job: presentJob(job, project) };
    },
  );

  app.post(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id/stop",
    {
      schema: {
        summary: "Stop a training job.",
        tags: ["training jobs"],
        params: JobParams,
        response: { 200: JobResponse, ...errorResponses },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const { training_project_id: p, training_job_id: j } = request.params;
      const job = await service.stopJob(caller, p, j);
      const { project } = await service.getJob(caller, p, j);
      return { training_job: presentJob(job, project) };
    },
  );

  app.delete(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id",
    {
      schema: {
        summary: "Delete a training job and all its checkpoint files.",
        tags: ["training jobs"],
        params: JobParams,
        response: {
          200: Type.Object({ id: Type.String(), deleted: Type.Boolean(), training_project_id: Type.String() }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { training_project_id: p, training_job_id: j } = request.params;
      await service.deleteJob(callerOf(request), p, j);
      return { id: j, deleted: true, training_project_id: p };
    },
  );

  app.get(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id/checkpoints",
    {
      schema: {
        summary: "List a job's checkpoints: the top-level folders of its files (files at the root of a rank belong to none).",
        description:
          "ckpt adds state (WRITING, COMPLETE, INCOMPLETE), file_count, aliases, pinned, completed_at and completed_by to each " +
          "entry; they come from per-checkpoint aggregates kept when files are committed.",
        tags: ["checkpoints"],
        params: JobParams,
        response: {
          200: Type.Object({ training_job: Type.Ref(TrainingJobV1), checkpoints: Type.Array(Type.Ref(TrainingJobCheckpointV1)) }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { training_project_id: p, training_job_id: j } = request.params;
      const { job, project, checkpoints, facts } = await service.listCheckpoints(callerOf(request), p, j);
      return { training_job: presentJob(job, project), checkpoints: checkpoints.map((c) => presentCheckpoint(c, job, facts.get(c.checkpointId))) };
    },
  );

  app.get(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id/download",
    {
      schema: {
        summary: "Get the job's uploaded source as artifacts (ckpt keeps none: always an empty list).",
        description:
          "Baseten's DownloadTrainingJobResponseV1. Jobs reach ckpt through its API, never as an uploaded source " +
          "archive, so a job that exists answers 200 with `artifact_presigned_urls: []`; an unknown job (or another " +
          "organisation's) is a 404, so the two are told apart by the status.",
        tags: ["training jobs"],
        params: JobParams,
        response: {
          200: Type.Object({ artifact_presigned_urls: Type.Array(Type.String(), { description: "Always empty: ckpt keeps no job source." }) }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { training_project_id: p, training_job_id: j } = request.params;
      await service.getJob(callerOf(request), p, j);
      return { artifact_presigned_urls: [] };
    },
  );
};
