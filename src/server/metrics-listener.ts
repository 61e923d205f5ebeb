import { createServer, type Server } from "node:http";
import type { FastifyBaseLogger } from "fastify";
import { errorJson } from "./error-body.js";

/**
 * The Prometheus endpoint, on a listener of its own (never the API's port, so it is not exposed
 * with the API): GET /metrics, nothing else. `render` gives the exposition text.
 */
export async function startMetricsListener(
  address: { host: string; port: number },
  render: () => Promise<{ contentType: string; body: string }>,
  logger: FastifyBaseLogger,
): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "application/json; charset=utf-8" });
      return void res.end(errorJson("NOT_FOUND", "only GET /metrics is served here"));
    }
    render().then(
      ({ contentType, body }) => {
        res.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
        res.end(req.method === "HEAD" ? undefined : body);
      },
      (err: unknown) => {
        logger.error({ err }, "metrics scrape failed");
        res.writeHead(500, { "content-type": "application/json; charset=utf-8" });
        res.end(errorJson("INTERNAL", "metrics unavailable"));
      },
    );
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(address.port, address.host, () => resolve());
  });
  logger.info({ metricsUrl: `http://${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}/metrics` }, "metrics listening");
  return server;
}
