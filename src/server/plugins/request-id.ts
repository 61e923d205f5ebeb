import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { FastifyInstance } from "fastify";

/** The header a request id arrives and leaves in (the de-facto standard one, as nginx and most LBs use). */
export const REQUEST_ID_HEADER = "x-request-id";
/** The field naming it in log lines (Fastify's own label, so its request logs carry it as well). */
export const REQUEST_ID_LOG_LABEL = "reqId";

/** Short and printable: a peer's id goes into logs and headers, so nothing longer or stranger is taken. */
const ACCEPTABLE = /^[A-Za-z0-9._:@+=/-]{1,128}$/;

/**
 * The request's id: the caller's X-Request-Id when it is acceptable (a proxy's id joins its logs
 * to ours), otherwise a new random one. Never refused: a bad id is replaced, not an error.
 */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers[REQUEST_ID_HEADER];
  return typeof given === "string" && ACCEPTABLE.test(given) ? given : randomUUID();
}

/**
 * Echoes the id in every response and adds it to every JSON error body as `request_id`, whatever
 * route or hook produced the error (the body is rewritten after serialisation, so routes and the
 * error handler need not know). Fastify itself puts it in each log line of the request.
 */
export function installRequestIds(app: FastifyInstance): void {
  app.addHook("onRequest", async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id);
  });
  app.addHook("onSend", async (request, reply, payload) => {
    if (reply.statusCode < 400 || typeof payload !== "string" || !payload.startsWith("{")) return payload;
    try {
      const body = JSON.parse(payload) as Record<string, unknown>;
      if (typeof body.message !== "string" || body.request_id !== undefined) return payload;
      return JSON.stringify({ ...body, request_id: request.id });
    } catch {
      return payload;
    }
  });
}
