import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { loadServerConfig } from "../config.js";
import { CliError } from "./common.js";

const LOOPBACK = /^(127\.[0-9.]+|::1|localhost)$/;

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("run the API server (embedded default: SQLite + local disk under --data-dir)")
    .option("--data-dir <dir>", "data directory (env CKPT_DATA_DIR; default ./ckpt-data)")
    .option("--host <host>", "listen address (env CKPT_HOST; default 127.0.0.1)")
    .option("--port <port>", "listen port (env CKPT_PORT; default 8787)")
    .option("--public-url <url>", "base of presigned URLs (env CKPT_PUBLIC_URL; default the listen address)")
    .option("--url-ttl <seconds>", "presigned URL lifetime (env CKPT_URL_TTL; default 604800 = 7 days)")
    .option("--max-page-size <n>", "largest checkpoint_files page (env CKPT_MAX_PAGE_SIZE; default 1000)")
    .option("--max-files-per-job <n>", "new files beyond this are refused with 409 (env CKPT_MAX_FILES_PER_JOB; default 10000000)")
    .option("--max-log-lines-per-job <n>", "training-log lines kept per job, the oldest dropped beyond (env CKPT_MAX_LOG_LINES_PER_JOB; default 200000)")
    .option("--json-body-limit <bytes>", "largest JSON request body, 413 above (env CKPT_JSON_BODY_LIMIT; default 1048576)")
    .option("--log-level <level>", "fatal|error|warn|info|debug (env CKPT_LOG_LEVEL; default info)")
    .option("--public", "allow listening on a non-loopback address")
    .option("--tls-cert <file>", "serve HTTPS with this PEM certificate chain (env CKPT_TLS_CERT; needs --tls-key)")
    .option("--tls-key <file>", "the PEM private key of --tls-cert (env CKPT_TLS_KEY)")
    .option("--trust-proxy [addresses]", "behind a reverse proxy: trust its X-Forwarded-* headers, from any hop or only these comma-separated addresses/CIDRs (env CKPT_TRUST_PROXY)")
    .option("--rate-limit <rate[:burst]>", "per API key, requests/s and burst, 429 beyond (env CKPT_RATE_LIMIT; default off)")
    .option("--headers-timeout <seconds>", "a request's headers must arrive within this (env CKPT_HEADERS_TIMEOUT; default 30)")
    .option("--request-timeout <seconds>", "a JSON request's body must arrive within this (env CKPT_REQUEST_TIMEOUT; default 30)")
    .option("--idle-timeout <seconds>", "close a connection silent this long mid-request, e.g. a stalled upload (env CKPT_IDLE_TIMEOUT; default 60)")
    .option("--max-header-bytes <n>", "largest header block, 431 above (env CKPT_MAX_HEADER_BYTES; default 16384)")
    .option("--grace-period <seconds>", "on SIGTERM, how long in-flight requests may take to finish (env CKPT_GRACE_PERIOD; default 30)")
    .option("--accel-redirect <internal-prefix>", "behind nginx: verify downloads, then let nginx send the file from this internal location via X-Accel-Redirect (env CKPT_ACCEL_REDIRECT; local blob store only)")
    .option("--workers <n>", "server processes sharing the port, each a full server over the same stores (env CKPT_WORKERS; default the number of cores)")
    .option("--metrics-port <port>", "serve Prometheus /metrics on this port (env CKPT_METRICS_PORT; default off)")
    .option("--metrics-host <host>", "address of the metrics listener (env CKPT_METRICS_HOST; default 127.0.0.1)")
    .option("--readiness-timeout <ms>", "how long /readyz waits for each store (env CKPT_READINESS_TIMEOUT_MS; default 2000)")
    .action(async (opts) => {
      const config = loadServerConfig(opts);
      // A server reachable from other machines must be a deliberate choice: plain HTTP would
      // carry API keys in clear, so it takes --public, TLS here, or a (TLS-terminating) proxy.
      if (!LOOPBACK.test(config.host) && !opts.public && !config.tls && !config.trustProxy)
        throw new CliError(
          `refusing to listen on non-loopback address ${config.host}: give --tls-cert/--tls-key, or --trust-proxy behind a TLS-terminating proxy, or --public; see README "Reliability and security"`,
        );
      let tls: { cert: Buffer; key: Buffer } | undefined;
      if (config.tls) {
        try {
          tls = { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) };
        } catch (err) {
          throw new CliError(`cannot read the TLS certificate or key: ${(err as Error).message}`);
        }
      }
      // The server's modules (Fastify, the stores, the AWS SDK) load only when it runs, so that
      // `ckpt --help`, which registers every command, does not pay for them.
      const [{ default: pino }, { buildApp, logSerializers }, { openRuntime }, cluster, { ServerMetrics }, { startMetricsListener }] = await Promise.all([
        import("pino"),
        import("../server/app.js"),
        import("../server/runtime.js"),
        import("../server/cluster.js"),
        import("../server/metrics.js"),
        import("../server/metrics-listener.js"),
      ]);
      const { isClusterWorker, runClusterPrimary, shareMetricsWithPrimary, workerId } = cluster;
      const worker = isClusterWorker();
      const base = pino({ level: config.logLevel, serializers: logSerializers });
      const logger = worker ? base.child({ worker: workerId() }) : base;
      // Migrations and the start-up sweeps (temporary files of dead uploads, expired direct
      // uploads, interrupted deletes) run once, before any server answers: in the primary of a
      // cluster, or here in a single process. Never in a worker, which would sweep the
      // temporary files of uploads its siblings are writing.
      const prepare = async () => {
        const runtime = await openRuntime(config);
        try {
          const recovered = await runtime.service.recover();
          if (recovered.incompleteUploadsRemoved || recovered.deletesFinished) logger.info(recovered, "recovered from an earlier unclean stop");
        } finally {
          await runtime.close();
        }
      };
      if (!worker && config.workers > 1) return runClusterPrimary(config, logger, prepare);
      if (!worker) await prepare();

      const metrics = config.metrics ? new ServerMetrics() : undefined;
      const runtime = await openRuntime(config, { metrics });
      // `ckpt admin rotate-url-secret` rewrites the keyring file; pick it up without a restart.
      runtime.signer?.followKeyringFile(config.dataDir);
      const app = await buildApp({
        service: runtime.service,
        signer: runtime.signer,
        servedBlobs: runtime.servedBlobs,
        jsonBodyLimit: config.jsonBodyLimit,
        logger,
        tls,
        trustProxy: config.trustProxy,
        rateLimit: config.rateLimit,
        connectionLimits: config.connectionLimits,
        accelRedirect: config.accelRedirect,
        metrics,
        readinessTimeoutMs: config.readinessTimeoutMs,
      });
      let metricsServer: import("node:http").Server | undefined;
      if (metrics && worker) shareMetricsWithPrimary(metrics.registry);
      else if (metrics && config.metrics)
        metricsServer = await startMetricsListener(config.metrics, async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }), logger);
      await app.listen({ host: config.host, port: config.port });
      logger.info(
        { dataDir: config.dataDir, publicUrl: config.publicUrl, tls: Boolean(tls), rateLimit: config.rateLimit, accelRedirect: config.accelRedirect },
        worker ? "worker serving" : "ckpt serving",
      );

      // Draining: app.close() stops accepting connections at once (new ones are refused), answers
      // 503 to new requests on open keep-alive connections and waits for the requests in flight,
      // downloads and uploads alike; whatever is still running after the grace period is cut off
      // (an upload cut off is not committed and leaves nothing behind).
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, "stopping: finishing in-flight requests");
        const grace = config.gracePeriodSeconds * 1000;
        const timer = setTimeout(() => {
          logger.warn("grace period over: closing remaining connections");
          app.server.closeAllConnections();
        }, grace);
        timer.unref();
        app.server.closeIdleConnections();
        await app.close();
        metricsServer?.close();
        await runtime.close();
        process.exit(0);
      };
      process.on("SIGTERM", () => void stop("SIGTERM"));
      process.on("SIGINT", () => void stop("SIGINT"));
    });
}
