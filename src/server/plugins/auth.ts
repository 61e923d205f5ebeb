import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Caller, CkptService } from "../../domain/service.js";

declare module "fastify" {
  interface FastifyRequest {
    caller: Caller | null;
  }
}

/** Authenticates every route registered in `app`'s scope; a route never parses auth itself. */
export function requireApiKey(app: FastifyInstance, service: CkptService): void {
  app.decorateRequest("caller", null);
  app.addHook("onRequest", async (request) => {
    request.caller = await service.authenticate(request.headers.authorization);
  });
}

export function callerOf(request: FastifyRequest): Caller {
  if (!request.caller) throw new Error("route registered outside the authenticated scope");
  return request.caller;
}
