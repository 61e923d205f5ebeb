import type { Command } from "commander";
import pino from "pino";
import { loadServerConfig } from "../config.js";
import { buildApp, logSerializers } from "../server/app.js";
import { openRuntime } from "../server/runtime.js";
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
    .option("--log-level <level>", "fatal|error|warn|info|debug (env CKPT_LOG_LEVEL; default info)")
    .option("--public", "allow listening on a non-loopback address")
    .option("--grace-period <seconds>", "on SIGTERM, how long in-flight requests may take to finish", "30")
    .action(async (opts) => {
      const config = loadServerConfig(opts);
      if (!LOOPBACK.test(config.host) && !opts.public)
        throw new CliError(
          `refusing to listen on non-loopback address ${config.host}: pass --public (and put TLS in front), see README "Reliability and security"`,
        );
      const logger = pino({ level: config.logLevel, serializers: logSerializers });
      const runtime = await openRuntime(config);
      const recovered = await runtime.service.recover();
      if (recovered.incompleteUploadsRemoved || recovered.deletesFinished)
        logger.info(recovered, "recovered from an earlier unclean stop");
      const app = await buildApp({
        service: runtime.service,
        signer: runtime.signer,
        jsonBodyLimit: config.jsonBodyLimit,
        logger,
      });
      await app.listen({ host: config.host, port: config.port });
      logger.info({ dataDir: config.dataDir, publicUrl: config.publicUrl }, "ckpt serving");

      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, "stopping: finishing in-flight requests");
        const grace = Number(opts.gracePeriod) * 1000;
        const timer = setTimeout(() => {
          logger.warn("grace period over: closing remaining connections");
          app.server.closeAllConnections();
        }, grace);
        timer.unref();
        app.server.closeIdleConnections();
        await app.close();
        await runtime.close();
        process.exit(0);
      };
      process.on("SIGTERM", () => void stop("SIGTERM"));
      process.on("SIGINT", () => void stop("SIGINT"));
    });
}
