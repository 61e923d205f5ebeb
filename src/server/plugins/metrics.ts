import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ServerMetrics, UploadKind } from "../metrics.js";

/** Routes that are not traffic: load-balancer probes. (/metrics has a listener of its own.) */
const UNCOUNTED_ROUTES: ReadonlySet<string> = new Set(["/livez", "/readyz", "/healthz"]);
/** The label of requests no route matched (404s of made-up URLs: one series, not one per URL). */
const UNMATCHED_ROUTE = "(unmatched)";

/** What a request whose client went away before any answer is counted as (nginx's 499). */
const CLIENT_CLOSED_STATUS = 499;

const UPLOAD_FILE = "/v1/training_projects/:training_project_id/jobs/:training_job_id/checkpoint_files/:node_rank/*";
const BEGIN_UPLOAD = "/v1/training_projects/:training_project_id/jobs/:training_job_id/uploads";
const COMPLETE_UPLOAD = "/v1/training_projects/:training_project_id/jobs/:training_job_id/uploads/:upload_id/complete";
const ABORT_UPLOAD = "/v1/training_projects/:training_project_id/jobs/:training_job_id/uploads/:upload_id";

declare module "fastify" {
  interface FastifyRequest {
    /** The `code` of the error answered, read back from the body (upload failure reasons). */
    answeredErrorCode: string | null;
  }
}

/**
 * Counts and times every request by its route template (never the raw URL), and follows uploads
 * through their routes: begun, completed, or failed with the error code the client was given.
 */
export function installRequestMetrics(app: FastifyInstance, metrics: ServerMetrics): void {
  app.decorateRequest("answeredErrorCode", null);

  // Observed when the response's socket side closes, not in onResponse: Fastify runs no
  // onResponse for a request whose client went away (an upload cut off mid-body), and those must
  // count too. A response that never finished is recorded with its status if its headers went
  // out (a download cut short), else as 499 (nginx's "client closed request").
  app.addHook("onRequest", async (request, reply) => {
    if (request.method === "PUT" && request.routeOptions.url === UPLOAD_FILE) metrics.uploadBegun("streamed");
    // A client quick enough to leave before this hook runs closed the response already.
    if (reply.raw.closed) observe(request, reply);
    else reply.raw.once("close", () => observe(request, reply));
  });

  app.addHook("onSend", async (request, reply, payload) => {
    if (reply.statusCode >= 400 && typeof payload === "string" && uploadKindOf(request) !== null) {
      try {
        const code = (JSON.parse(payload) as { code?: unknown }).code;
        request.answeredErrorCode = typeof code === "string" && /^[A-Z_]{1,40}$/.test(code) ? code : null;
      } catch {
        /* not JSON: the status will do */
      }
    }
    return payload;
  });

  const observe = (request: FastifyRequest, reply: FastifyReply) => {
    const route = request.routeOptions.url ?? UNMATCHED_ROUTE;
    if (UNCOUNTED_ROUTES.has(route)) return;
    const finished = reply.raw.writableFinished;
    const status = finished || reply.raw.headersSent ? reply.statusCode : CLIENT_CLOSED_STATUS;
    const bytesIn = Number(request.headers["content-length"]) || 0;
    const bytesOut = !finished || request.method === "HEAD" || status === 204 || status === 304 ? 0 : Number(reply.getHeader("content-length")) || 0;
    metrics.observeRequest(request.method, route, status, reply.elapsedTime / 1000, bytesIn, bytesOut);

    const kind = uploadKindOf(request);
    if (kind === null) return;
    const reason = !finished ? "CLIENT_CLOSED" : (request.answeredErrorCode ?? `HTTP_${status}`);
    if (route === BEGIN_UPLOAD) {
      if (finished && status < 300) metrics.uploadBegun("direct");
    } else if (route === ABORT_UPLOAD) {
      if (finished && status < 300) metrics.uploadFailed("direct", "ABORTED");
    } else if (finished && status === 201) {
      metrics.uploadCompleted(kind);
    } else {
      metrics.uploadFailed(kind, reason);
    }
  };
}

function uploadKindOf(request: FastifyRequest): UploadKind | null {
  const route = request.routeOptions.url;
  if (route === UPLOAD_FILE && request.method === "PUT") return "streamed";
  if (route === COMPLETE_UPLOAD && request.method === "POST") return "direct";
  if (route === BEGIN_UPLOAD && request.method === "POST") return "direct";
  if (route === ABORT_UPLOAD && request.method === "DELETE") return "direct";
  return null;
}
