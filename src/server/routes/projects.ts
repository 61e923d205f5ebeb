import { Type } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { CkptService } from "../../domain/service.js";
import { callerOf } from "../plugins/auth.js";
import { presentProject } from "../present.js";
import { ProjectParams, TrainingProjectV1, errorResponses } from "../schemas.js";

export const projectRoutes: FastifyPluginAsyncTypebox<{ service: CkptService }> = async (app, { service }) => {
  app.post(
    "/v1/training_projects",
    {
      schema: {
        summary: "Create a training project, or return the caller's project of that name.",
        tags: ["training projects"],
        body: Type.Object({
          training_project: Type.Object({ name: Type.String({ minLength: 1, maxLength: 1024 }) }),
        }),
        response: { 200: Type.Object({ training_project: Type.Ref(TrainingProjectV1) }), ...errorResponses },
      },
    },
    async (request) => {
      const { project, latestJob } = await service.upsertProject(callerOf(request), request.body.training_project.name);
      return { training_project: presentProject(project, latestJob) };
    },
  );

  app.get(
    "/v1/training_projects",
    {
      schema: {
        summary: "List the caller's training projects.",
        tags: ["training projects"],
        response: { 200: Type.Object({ training_projects: Type.Array(Type.Ref(TrainingProjectV1)) }), ...errorResponses },
      },
    },
    async (request) => {
      const projects = await service.listProjects(callerOf(request));
      return { training_projects: projects.map(({ project, latestJob }) => presentProject(project, latestJob)) };
    },
  );

  app.get(
    "/v1/training_projects/:training_project_id",
    {
      schema: {
        summary: "Get a training project.",
        tags: ["training projects"],
        params: ProjectParams,
        response: { 200: Type.Object({ training_project: Type.Ref(TrainingProjectV1) }), ...errorResponses },
      },
    },
    async (request) => {
      const { project, latestJob } = await service.getProject(callerOf(request), request.params.training_project_id);
      return { training_project: presentProject(project, latestJob) };
    },
  );

  app.delete(
    "/v1/training_projects/:training_project_id",
    {
      schema: {
        summary: "Delete a training project with all its jobs and checkpoint files.",
        tags: ["training projects"],
        params: ProjectParams,
        response: { 200: Type.Object({ id: Type.String(), deleted: Type.Boolean() }), ...errorResponses },
      },
    },
    async (request) => {
      await service.deleteProject(callerOf(request), request.params.training_project_id);
      return { id: request.params.training_project_id, deleted: true };
    },
  );
};
