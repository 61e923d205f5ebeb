import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { BlobStore } from "../stores/blobs/store.js";
import type { MetadataStore } from "../stores/metadata/store.js";

/** Every metric ckpt exports is named `ckpt_...` (README "Operating ckpt" lists them). */
export const METRIC_PREFIX = "ckpt_";

/** Seconds: from a cached metadata lookup (sub-millisecond) to a multi-GiB upload. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const STORE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60];

export type UploadKind = "streamed" | "direct";

/**
 * The metrics of one server process, in a registry of its own (in a cluster, the primary sums the
 * workers' registries; see cluster.ts). Labels are bounded by construction: a route template, an
 * HTTP method, a status class, a store method name, an error code; never a URL or an id.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"method" | "route" | "status_class">;
  private readonly requestDuration: Histogram<"method" | "route" | "status_class">;
  private readonly bytesServed: Counter<"route">;
  private readonly bytesReceived: Counter<"route">;
  private readonly uploadsBegun: Counter<"kind">;
  private readonly uploadsCompleted: Counter<"kind">;
  private readonly uploadsFailed: Counter<"kind" | "reason">;
  private readonly presignedUrls: Counter<"method">;
  private readonly metadataDuration: Histogram<"operation" | "outcome">;
  private readonly blobDuration: Histogram<"operation" | "outcome">;

  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    this.requests = new Counter({
      name: `${METRIC_PREFIX}http_requests_total`,
      help: "HTTP requests answered, by method, route template and status class (probes and /metrics not counted)",
      labelNames: ["method", "route", "status_class"],
      registers,
    });
    this.requestDuration = new Histogram({
      name: `${METRIC_PREFIX}http_request_duration_seconds`,
      help: "Time from a request's arrival to the end of its response",
      labelNames: ["method", "route", "status_class"],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.bytesServed = new Counter({
      name: `${METRIC_PREFIX}http_response_body_bytes_total`,
      help: "Body bytes of responses sent in full (downloads: the bytes of the file or range)",
      labelNames: ["route"],
      registers,
    });
    this.bytesReceived = new Counter({
      name: `${METRIC_PREFIX}http_request_body_bytes_total`,
      help: "Body bytes of requests answered (their Content-Length)",
      labelNames: ["route"],
      registers,
    });
    this.uploadsBegun = new Counter({
      name: `${METRIC_PREFIX}uploads_begun_total`,
      help: "Uploads begun: streamed PUTs received, direct uploads whose part URLs were handed out",
      labelNames: ["kind"],
      registers,
    });
    this.uploadsCompleted = new Counter({
      name: `${METRIC_PREFIX}uploads_completed_total`,
      help: "Uploads that became a listed file",
      labelNames: ["kind"],
      registers,
    });
    this.uploadsFailed = new Counter({
      name: `${METRIC_PREFIX}uploads_failed_total`,
      help: "Uploads that did not become a file, by reason (the error code answered; ABORTED for a client's abort)",
      labelNames: ["kind", "reason"],
      registers,
    });
    this.presignedUrls = new Counter({
      name: `${METRIC_PREFIX}presigned_urls_issued_total`,
      help: "Presigned URLs issued: GET for downloads, PUT for direct-upload parts",
      labelNames: ["method"],
      registers,
    });
    this.metadataDuration = new Histogram({
      name: `${METRIC_PREFIX}metadata_store_query_duration_seconds`,
      help: "Metadata store calls, by store operation and outcome",
      labelNames: ["operation", "outcome"],
      buckets: STORE_BUCKETS,
      registers,
    });
    this.blobDuration = new Histogram({
      name: `${METRIC_PREFIX}blob_store_call_duration_seconds`,
      help: "Blob store calls, by store operation and outcome",
      labelNames: ["operation", "outcome"],
      buckets: STORE_BUCKETS,
      registers,
    });
  }

  observeRequest(method: string, route: string, statusCode: number, seconds: number, bytesIn: number, bytesOut: number): void {
    const labels = { method, route, status_class: `${Math.floor(statusCode / 100)}xx` };
    this.requests.inc(labels);
    this.requestDuration.observe(labels, seconds);
    if (bytesIn > 0) this.bytesReceived.inc({ route }, bytesIn);
    if (bytesOut > 0) this.bytesServed.inc({ route }, bytesOut);
  }

  uploadBegun(kind: UploadKind): void {
    this.uploadsBegun.inc({ kind });
  }

  uploadCompleted(kind: UploadKind): void {
    this.uploadsCompleted.inc({ kind });
  }

  uploadFailed(kind: UploadKind, reason: string): void {
    this.uploadsFailed.inc({ kind, reason });
  }

  /** The metadata store, timed call by call; the same object otherwise (see instrument()). */
  instrumentMetadata(store: MetadataStore): MetadataStore {
    const metadataDuration = this.metadataDuration;
    const pooled = store.poolStats() !== null;
    if (pooled) {
      new Gauge({
        name: `${METRIC_PREFIX}metadata_pool_connections`,
        help: "PostgreSQL pool connections, by state (in_use, idle)",
        labelNames: ["state"],
        registers: [this.registry],
        collect() {
          const stats = store.poolStats();
          if (!stats) return;
          this.set({ state: "in_use" }, stats.total - stats.idle);
          this.set({ state: "idle" }, stats.idle);
        },
      });
      new Gauge({
        name: `${METRIC_PREFIX}metadata_pool_waiting_requests`,
        help: "Queries waiting for a PostgreSQL pool connection",
        registers: [this.registry],
        collect() {
          this.set(store.poolStats()?.waiting ?? 0);
        },
      });
    }
    return instrument(store, NOT_TIMED_METADATA, (operation, outcome, seconds) => metadataDuration.observe({ operation, outcome }, seconds));
  }

  /** The blob store, timed call by call, and its presigned URLs counted. */
  instrumentBlobs<T extends BlobStore>(store: T): T {
    const blobDuration = this.blobDuration;
    const presigned = this.presignedUrls;
    const timed = instrument(store, NOT_TIMED_BLOBS, (operation, outcome, seconds) => blobDuration.observe({ operation, outcome }, seconds));
    const presignGet = store.presignGet.bind(store);
    const beginDirectUpload = timed.beginDirectUpload.bind(timed);
    return new Proxy(timed, {
      get(target, property, receiver) {
        if (property === "presignGet")
          return (key: string, expiresInSeconds: number, now?: Date) => {
            presigned.inc({ method: "GET" });
            return presignGet(key, expiresInSeconds, now);
          };
        if (property === "beginDirectUpload")
          return async (...args: Parameters<BlobStore["beginDirectUpload"]>) => {
            const plan = await beginDirectUpload(...args);
            presigned.inc({ method: "PUT" }, plan.parts.length);
            return plan;
          };
        return Reflect.get(target, property, receiver);
      },
    });
  }
}

/** Calls not worth a histogram sample: synchronous, in-memory, or the store's own life cycle. */
const NOT_TIMED_METADATA = new Set(["close", "poolStats", "kind"]);
const NOT_TIMED_BLOBS = new Set(["close", "kind", "presignGet", "listKeys"]);

/**
 * A proxy of `store` whose promise-returning methods report their duration and outcome. It is
 * the store itself for everything else (properties, `instanceof`, synchronous methods, which are
 * bound to the store so its private fields keep working), so it is a drop-in at the composition root.
 */
function instrument<T extends object>(store: T, skip: ReadonlySet<string>, observe: (operation: string, outcome: "ok" | "error", seconds: number) => void): T {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(store, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== "function") return value;
      let fn = wrapped.get(property);
      if (fn === undefined) {
        const method = value as (...args: unknown[]) => unknown;
        const operation = String(property);
        fn =
          skip.has(operation) || operation === "constructor"
            ? method.bind(target)
            : (...args: unknown[]) => {
                const started = performance.now();
                const result = method.apply(target, args);
                if (!(result instanceof Promise)) return result;
                return result.then(
                  (v) => (observe(operation, "ok", (performance.now() - started) / 1000), v),
                  (err: unknown) => {
                    observe(operation, "error", (performance.now() - started) / 1000);
                    throw err;
                  },
                );
              };
        wrapped.set(property, fn);
      }
      return fn;
    },
  });
}
