import type { IncomingMessage, Server, ServerOptions, ServerResponse } from "node:http";
import Fastify, { type FastifyBaseLogger, type FastifyHttpOptions, type FastifyInstance } from "fastify";
import swagger from "@fastify/swagger";
import { Ajv } from "ajv";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits, type RateLimit } from "../config.js";
import type { CkptService } from "../domain/service.js";
import type { ServableBlobStore } from "../domain/blob-serving.js";
import type { UrlSigner } from "./url-signing.js";
import { requireApiKey } from "./plugins/auth.js";
import { clientErrorHandler, frameworkErrors, installErrorHandling } from "./plugins/errors.js";
import { refuseImpossibleIds } from "./plugins/ids.js";
import { limitJsonDepth } from "./plugins/json-body.js";
import { limitRatePerKey } from "./plugins/rate-limit.js";
import { installSecurityHeaders } from "./plugins/security-headers.js";
import { limitBufferedBodyTime, nodeServerOptions } from "./plugins/slow-clients.js";
import { blobDownloadHandler, isBlobDownload } from "./routes/blob-downloads.js";
import { blobRoutes } from "./routes/blobs.js";
import { listCheckpointFilesRoute, uploadCheckpointFileRoute } from "./routes/checkpoint-files.js";
import { checkpointTensorsRoute } from "./routes/checkpoint-tensors.js";
import { consoleRoutes } from "./routes/console.js";
import { jobRoutes } from "./routes/jobs.js";
import { logRoutes } from "./routes/logs.js";
import { loadCheckpointRoutes } from "./routes/load-checkpoints.js";
import { JobLogs } from "../domain/logs.js";
import { checkpointObjectRoutes } from "./routes/checkpoint-objects.js";
import { projectRoutes } from "./routes/projects.js";
import { trainingJobsSearchRoute } from "./routes/training-jobs-search.js";
import { uploadRoutes } from "./routes/uploads.js";
import { SharedSchemas } from "./schemas.js";
import type { ServerMetrics } from "./metrics.js";
import { installRequestMetrics } from "./plugins/metrics.js";
import { installRequestIds, requestIdOf } from "./plugins/request-id.js";
import { healthRoutes } from "./routes/health.js";

export interface AppOptions {
  service: CkptService;
  /** Present when blobs are served by this server (the local blob store), with `servedBlobs`. */
  signer?: UrlSigner;
  /** The local blob store as the blob routes see it (Runtime.servedBlobs). */
  servedBlobs?: ServableBlobStore;
  jsonBodyLimit: number;
  /** A pino logger built with `logSerializers`; no logging when absent. */
  logger?: FastifyBaseLogger;
  /** Serve HTTPS with this PEM certificate chain and key; plain HTTP when absent. */
  tls?: { cert: Buffer; key: Buffer };
  /** Trust X-Forwarded-* from these proxies (see ServerConfig.trustProxy); off when absent. */
  trustProxy?: boolean | string;
  /** Per-API-key rate limit; none when absent or null. */
  rateLimit?: RateLimit | null;
  /** Timeouts and header size for slow or hostile clients; DEFAULT_CONNECTION_LIMITS when absent. */
  connectionLimits?: ConnectionLimits;
  /** nginx's internal location of the blob directory: downloads answer with X-Accel-Redirect to it. */
  accelRedirect?: string;
  /** Request counters and timings (README "Operating ckpt"); none when absent. */
  metrics?: ServerMetrics;
  /** How long /readyz waits for each store; 2 s when absent. */
  readinessTimeoutMs?: number;
}

/** Strips query strings from logged URLs: presigned URLs carry their signature there. */
function redactUrl(url: string | undefined): string | undefined {
  if (!url) return url;
  const q = url.indexOf("?");
  return q === -1 ? url : `${url.slice(0, q)}?[redacted]`;
}

export const logSerializers = {
  // Only these fields are logged: never headers (they carry API keys) nor query strings.
  req: (req: { method: string; url?: string; ip?: string }) => ({ method: req.method, url: redactUrl(req.url), ip: req.ip }),
  res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
};

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const limits = options.connectionLimits ?? DEFAULT_CONNECTION_LIMITS;
  const serverOptions: ServerOptions = nodeServerOptions(limits);
  const fastifyOptions: FastifyHttpOptions<Server> = {
    // https.createServer takes the http server options too. The instance is typed as an HTTP
    // one either way: nothing here depends on the difference.
    ...(options.tls ? ({ https: { ...serverOptions, ...options.tls } } as object) : { http: serverOptions }),
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit: options.jsonBodyLimit,
    // Ids of projects and jobs are short; anything huge in a URL is hostile.
    routerOptions: { maxParamLength: 2048 },
    // Keep-alive connections idle longer than a typical LB's so the LB closes first.
    keepAliveTimeout: 65_000,
    // Inactivity in the middle of a request (a stalled upload or download) closes the connection;
    // there is deliberately no limit on a request's total time: uploads are big.
    connectionTimeout: limits.idleTimeoutSeconds * 1000,
    requestTimeout: 0,
    clientErrorHandler,
    frameworkErrors,
    trustProxy: options.trustProxy ?? false,
    return503OnClosing: true,
    // Every request has an id: the caller's X-Request-Id if acceptable, else a new one
    // (plugins/request-id.ts); Fastify logs it as REQUEST_ID_LOG_LABEL, its default label.
    requestIdHeader: false,
    genReqId: requestIdOf,
  };
  const app = Fastify(fastifyOptions).withTypeProvider<TypeBoxTypeProvider>();

  // Path, query and header values arrive as strings and are coerced to their schema's type; a
  // JSON body is not: {"name": 42} is a client error, not the name "42".
  const coercing = new Ajv({ coerceTypes: "array", useDefaults: true, removeAdditional: false, allErrors: false });
  const exact = new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: false });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === "body" ? exact : coercing).compile(schema));

  for (const schema of SharedSchemas) app.addSchema(schema);

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "ckpt — training checkpoint API",
        version: "1.0.0",
        description: "A self-hostable implementation of the training-checkpoint part of Baseten's management API.",
      },
      components: {
        securitySchemes: {
          ApiKeyAuth: {
            type: "apiKey",
            in: "header",
            name: "Authorization",
            description: "`Authorization: Api-Key <key>` (or `Bearer <key>`).",
          },
        },
      },
      security: [{ ApiKeyAuth: [] }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (json.$id as string | undefined) ?? `def-${i}` },
  });

  installErrorHandling(app);
  installSecurityHeaders(app, { hsts: options.tls !== undefined });
  installRequestIds(app);
  if (options.metrics) installRequestMetrics(app, options.metrics);
  // Before any route is registered, so the hooks and the parser apply to all of them.
  limitBufferedBodyTime(app, limits.requestTimeoutSeconds * 1000);
  limitJsonDepth(app);

  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  app.get("/healthz", { schema: { hide: true }, logLevel: "warn" }, async () => ({ ok: true }));
  await app.register(healthRoutes, { service: options.service, timeoutMs: options.readinessTimeoutMs ?? 2000 });
  // The web console (static files, its own CSP), outside the API-key scope.
  await app.register(consoleRoutes);

  await app.register(async (api) => {
    requireApiKey(api, options.service);
    if (options.rateLimit) limitRatePerKey(api, options.rateLimit);
    refuseImpossibleIds(api);
    await api.register(projectRoutes, { service: options.service });
    await api.register(jobRoutes, { service: options.service });
    await api.register(trainingJobsSearchRoute, { service: options.service });
    await api.register(listCheckpointFilesRoute, { service: options.service, maxPageSize: options.service.limits.maxPageSize });
    await api.register(uploadCheckpointFileRoute, { service: options.service });
    await api.register(uploadRoutes, { service: options.service });
    await api.register(loadCheckpointRoutes, { service: options.service });
    await api.register(logRoutes, { logs: new JobLogs(options.service, options.service.limits.maxLogLinesPerJob) });
    await api.register(checkpointTensorsRoute, { service: options.service });
    await api.register(checkpointObjectRoutes, { service: options.service });
  });

  if (options.signer) {
    const blobs = options.servedBlobs;
    if (!blobs) throw new Error("a URL signer is given only with the local blob store, and with it (servedBlobs)");
    await app.register(blobRoutes, { service: options.service, signer: options.signer, blobs });
    let closing = false;
    app.addHook("preClose", async () => {
      closing = true;
    });
    const download = blobDownloadHandler({
      service: options.service,
      signer: options.signer,
      blobs,
      accelRedirect: options.accelRedirect,
      hsts: options.tls !== undefined,
      logger: options.logger,
      metrics: options.metrics,
      isClosing: () => closing,
    });
    // Downloads are answered before Fastify routes them. Measured in the serving benchmark's
    // rotating rounds, the same handler mounted as a Fastify route (reply.hijack(), so no reply
    // serialisation or onSend hooks) cost 512-585 CPU us per small GET against 330 here in two
    // of three runs (equal in the third, this box being noisy); the profile put the difference in
    // Fastify's per-request objects, child logger and hooks, and in twice the GC time.
    // Still declared to Fastify, so /openapi.json lists it (and the fuzz tests that read the
    // routes from there exercise it); requests never get this far but are handled the same.
    app.route({
      method: ["GET", "HEAD"],
      url: "/blobs/*",
      exposeHeadRoute: false,
      handler: (request, reply) => {
        reply.hijack();
        download(request.raw, reply.raw);
      },
    });
    const [fastifyListener] = app.server.listeners("request") as ((req: IncomingMessage, res: ServerResponse) => void)[];
    app.server.removeAllListeners("request");
    app.server.on("request", (req: IncomingMessage, res: ServerResponse) => (isBlobDownload(req) ? download(req, res) : fastifyListener!(req, res)));
  }
  return app;
}
