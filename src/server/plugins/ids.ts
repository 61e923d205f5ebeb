import type { FastifyInstance } from "fastify";
import { notFound } from "../../domain/errors.js";

const RESOURCE_OF_PARAM: Record<string, string> = {
  training_project_id: "training project",
  training_job_id: "training job",
  upload_id: "upload",
};

/**
 * An id path parameter holding a NUL character names nothing ckpt ever created (ids are
 * generated from [a-z0-9]), so it is a 404 like any unknown id, decided before a store sees it:
 * PostgreSQL refuses NUL in text parameters outright, which would otherwise surface as a 500.
 */
export function refuseImpossibleIds(app: FastifyInstance): void {
  app.addHook("preValidation", async (request) => {
    const params = request.params as Record<string, unknown> | undefined;
    if (!params) return;
    for (const [name, value] of Object.entries(params)) {
      if (name.endsWith("_id") && typeof value === "string" && value.includes("\u0000")) throw notFound(RESOURCE_OF_PARAM[name] ?? "resource");
    }
  });
}
