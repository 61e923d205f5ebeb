import { randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { ApiError, insufficientStorage } from "../../domain/errors.js";
import { REQUEST_ID_HEADER } from "./request-id.js";
import { errorSecurityHeaders } from "./security-headers.js";
import { rawResponse } from "./slow-clients.js";
import { errorBody, errorJson } from "../error-body.js";

/**
 * Every error leaves as `{ message, code }` JSON. Client mistakes keep their 4xx status and a
 * message that says what was wrong; anything unexpected is a 500 with a fixed message (the
 * details go to the log, never to the client).
 */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | ApiError, request, reply) => {
    if (err instanceof ApiError) {
      return reply.status(err.statusCode).send(errorBody(err.code, err.message));
    }
    const fe = err as FastifyError;
    if (fe.validation) {
      const where = fe.validationContext ?? "request";
      // Ajv's message does not name an unexpected property; say which one it was.
      const extra = fe.validation.find((v) => v.keyword === "additionalProperties")?.params?.additionalProperty;
      const named = typeof extra === "string" ? ` ('${extra.slice(0, 100)}')` : "";
      return reply.status(400).send(errorBody("BAD_REQUEST", `invalid ${where}: ${fe.message}${named}`));
    }
    // The client hung up (or was cut off as too slow) mid-request: nothing failed on our side
    // and nobody is left to answer, so this is not logged as a server error.
    if (request.raw.destroyed && (fe.code === "ECONNRESET" || fe.code === "ERR_STREAM_PREMATURE_CLOSE")) {
      request.log.info({ code: fe.code }, "client went away mid-request");
      return reply.status(400).send(errorBody("CLIENT_CLOSED", "the client closed the connection"));
    }
    // A full disk under the metadata store (SQLite's SQLITE_FULL, PostgreSQL's disk_full) is a
    // condition the operator must fix, not a bug: say so, as uploads do when blobs run out of room.
    const dbCode = (err as { code?: unknown }).code;
    if (dbCode === "SQLITE_FULL" || dbCode === "53100") {
      request.log.error({ err }, "metadata store out of space");
      const full = insufficientStorage("the metadata store is out of space");
      return reply.status(full.statusCode).send(errorBody(full.code, full.message));
    }
    // A store that cannot be reached (PostgreSQL or S3 down, restarting, out of connections)
    // is a 503 the client may retry, said at once: readiness reports the same to the balancer.
    if (isStoreUnreachable(err)) {
      request.log.error({ err }, "a store is unreachable");
      return reply.status(503).header("retry-after", "1").send(errorBody("SERVICE_UNAVAILABLE", "a backing store is unavailable; retry shortly"));
    }
    const status = fe.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      return reply.status(status).send(errorBody(fe.code ?? "BAD_REQUEST", fe.message));
    }
    request.log.error({ err }, "unhandled error");
    return reply.status(500).send(errorBody("INTERNAL", "internal server error"));
  });

  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send(errorBody("NOT_FOUND", `no route for ${request.method} ${request.url.split("?")[0]}`));
  });
}

const NETWORK_ERRORS = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "EPIPE"]);

/**
 * Errors that mean "the database or object store is not there right now", not a bug: network
 * errors (also as an error's cause, as the AWS SDK wraps them), PostgreSQL's connection
 * exceptions (class 08) and shutdown states (57P01-57P03), node-postgres' own connection errors.
 */
function isStoreUnreachable(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || depth > 3) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && (NETWORK_ERRORS.has(code) || code.startsWith("08") || /^57P0[1-3]$/.test(code))) return true;
  if (/^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/.test(err.message)) return true;
  if (err.name === "TimeoutError" || err.name === "AbortError") return depth > 0 || (err as { $metadata?: unknown }).$metadata !== undefined;
  return isStoreUnreachable(err.cause, depth + 1) || (err instanceof AggregateError && err.errors.some((e) => isStoreUnreachable(e, depth + 1)));
}

/**
 * Node's HTTP parser refuses some requests before Fastify sees them: headers too large (431),
 * headers not complete in time (408), malformed requests (400). They get the same JSON error
 * shape and security headers as everything else, then the connection is closed.
 */
export function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const [status, reason, message, code] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [431, "Request Header Fields Too Large", "the request's headers are too large", "HEADERS_TOO_LARGE"]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "Request Timeout", "the request's headers did not arrive in time", "REQUEST_TIMEOUT"]
        : [400, "Bad Request", "malformed HTTP request", "BAD_REQUEST"];
  this.log.debug({ code: err.code }, "client error: %s", message);
  if (socket.writable) socket.end(rawResponse(status, reason, errorJson(code, message, randomUUID())));
  socket.destroySoon();
}

/**
 * URLs the router rejects before any route or hook runs: malformed percent-encoding (400) and
 * path parameters over maxParamLength (414). Fastify's default answer has neither our error
 * shape nor, as no hook runs, the security headers.
 */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const known: Record<string, [number, string]> = {
    FST_ERR_BAD_URL: [400, "malformed percent-encoding in the URL"],
    FST_ERR_MAX_PARAM_LENGTH: [414, "a URL path parameter is too long"],
  };
  const [status, message] = known[err.code] ?? [err.statusCode && err.statusCode < 500 ? err.statusCode : 400, "bad request"];
  request.log.info({ code: err.code }, message);
  void reply
    .headers({ ...errorSecurityHeaders(), [REQUEST_ID_HEADER]: request.id })
    .status(status)
    .send(errorBody(status === 414 ? "URI_TOO_LONG" : "BAD_REQUEST", message, { request_id: request.id }));
}
