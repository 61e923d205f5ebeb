import cluster, { type Worker } from "node:cluster";
import type { Server } from "node:http";
import type { FastifyBaseLogger } from "fastify";
import { AggregatorRegistry, Counter, Gauge, Registry } from "prom-client";
import type { ServerConfig } from "../config.js";
import { METRIC_PREFIX } from "./metrics.js";
import { startMetricsListener } from "./metrics-listener.js";

/** A worker that dies this soon after it started listening again is restarted after a pause. */
const QUICK_DEATH_MS = 5_000;
const MAX_RESTART_DELAY_MS = 5_000;

/**
 * The primary of `ckpt serve --workers N`: it prepares the stores once (migrations, start-up
 * sweeps: `prepare`), forks N workers that each run a full server on the shared port, replaces a
 * worker that dies, drains them all on SIGTERM/SIGINT, and serves /metrics summed over workers.
 * It answers no API request itself.
 */
export async function runClusterPrimary(config: ServerConfig, logger: FastifyBaseLogger, prepare: () => Promise<void>): Promise<void> {
  await prepare();

  const ownMetrics = new Registry();
  const aliveGauge = new Gauge({ name: `${METRIC_PREFIX}cluster_workers`, help: "Worker processes running", registers: [ownMetrics] });
  const restarts = new Counter({
    name: `${METRIC_PREFIX}cluster_worker_restarts_total`,
    help: "Workers that died and were replaced (their counters restart from zero)",
    registers: [ownMetrics],
  });
  let metricsServer: Server | undefined;
  if (config.metrics) {
    const aggregator = new AggregatorRegistry();
    metricsServer = await startMetricsListener(
      config.metrics,
      async () => ({ contentType: aggregator.contentType, body: (await aggregator.clusterMetrics()) + (await ownMetrics.metrics()) }),
      logger,
    );
  }

  let stopping = false;
  let everyoneListening = false;
  let restartDelay = 100;
  const listeningSince = new Map<Worker, number>();
  const countAlive = () => aliveGauge.set(Object.keys(cluster.workers ?? {}).length);

  const fork = () => {
    const worker = cluster.fork();
    worker.once("listening", () => {
      listeningSince.set(worker, Date.now());
      logger.info({ worker: worker.id, pid: worker.process.pid }, "worker listening");
      if (!everyoneListening && listeningSince.size >= config.workers) {
        everyoneListening = true;
        logger.info({ workers: config.workers, host: config.host, port: config.port }, "ckpt serving");
      }
    });
    countAlive();
  };

  cluster.on("exit", (worker, code, signal) => {
    const since = listeningSince.get(worker);
    listeningSince.delete(worker);
    countAlive();
    if (stopping) return;
    if (since === undefined) {
      // It never listened: a start-up failure (port taken, bad certificate ...) that every
      // replacement would repeat. Stop rather than fork in a loop.
      logger.fatal({ worker: worker.id, pid: worker.process.pid, code, signal }, "a worker failed to start; stopping");
      void shutDown(1);
      return;
    }
    restarts.inc();
    restartDelay = Date.now() - since < QUICK_DEATH_MS ? Math.min(restartDelay * 2, MAX_RESTART_DELAY_MS) : 100;
    logger.error({ worker: worker.id, pid: worker.process.pid, code, signal, restartInMs: restartDelay }, "worker died; starting a replacement");
    setTimeout(() => {
      if (!stopping) fork();
    }, restartDelay).unref();
  });

  const shutDown = async (exitCode: number, signal?: string) => {
    if (stopping) return;
    stopping = true;
    if (signal) logger.info({ signal }, "stopping: draining every worker");
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    const gone = workers.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once("exit", () => resolve()))));
    // Each worker drains as a single server does on SIGTERM (its own grace period, then exit 0).
    for (const w of workers) w.process.kill("SIGTERM");
    const hardStop = setTimeout(() => {
      logger.warn("workers still running after the grace period: killing them");
      for (const w of workers) if (!w.isDead()) w.process.kill("SIGKILL");
    }, (config.gracePeriodSeconds + 10) * 1000);
    hardStop.unref();
    await Promise.all(gone);
    metricsServer?.close();
    process.exit(exitCode);
  };
  process.on("SIGTERM", () => void shutDown(0, "SIGTERM"));
  process.on("SIGINT", () => void shutDown(0, "SIGINT"));

  for (let i = 0; i < config.workers; i++) fork();
}

/** In a worker: lets the primary collect this worker's metrics from `registry`. */
export function shareMetricsWithPrimary(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // prom-client answers the primary's requests only once an AggregatorRegistry exists here.
  new AggregatorRegistry();
}

export const isClusterWorker = () => cluster.isWorker;
export const workerId = () => cluster.worker?.id;
