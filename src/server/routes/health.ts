import type { FastifyPluginAsync } from "fastify";
import type { CkptService } from "../../domain/service.js";
import { errorBody } from "../error-body.js";

/**
 * Probes for load balancers and orchestrators, outside authentication. Liveness: the process
 * answers. Readiness: both stores answer, each within `timeoutMs`; a 503 names which did not.
 * Logged only at warn: a probe a second would drown the request log. The probes are
 * unauthenticated, so the answer names what failed and the error itself goes to the log only
 * (it may name internal hosts).
 */
export const healthRoutes: FastifyPluginAsync<{ service: CkptService; timeoutMs: number }> = async (app, { service, timeoutMs }) => {
  app.get("/livez", { schema: { hide: true }, logLevel: "warn" }, async () => ({ status: "ok" }));

  app.get("/readyz", { schema: { hide: true }, logLevel: "warn" }, async (request, reply) => {
    const { ready, checks } = await service.readiness(timeoutMs);
    const publicChecks = Object.fromEntries(Object.entries(checks).map(([name, { ok, latencyMs }]) => [name, { ok, latency_ms: latencyMs }]));
    if (ready) return { status: "ready", checks: publicChecks };
    const failed = Object.entries(checks)
      .filter(([, check]) => !check.ok)
      .map(([name]) => (name === "metadata" ? "metadata store" : "blob store"));
    request.log.warn({ checks }, "not ready");
    return reply.status(503).send(errorBody("NOT_READY", `not ready: ${failed.join(" and ")} failing`, { status: "not ready", checks: publicChecks }));
  });
};
