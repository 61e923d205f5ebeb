import { availableParallelism } from "node:os";
import { resolve } from "node:path";

/**
 * The one config loader: command-line flags beat environment variables beat defaults, and
 * everything is validated here once, so the rest of the code can trust its config.
 */
export type BlobStoreConfig =
  | { kind: "local" }
  | {
      kind: "s3";
      bucket: string;
      prefix: string;
      endpoint?: string;
      /**
       * The endpoint written into presigned URLs, when clients reach the store by another name
       * than the servers do (an internal endpoint for servers, a public one for clients).
       */
      publicEndpoint?: string;
      region: string;
      forcePathStyle: boolean;
      /** Static keys from AWS_ACCESS_KEY_ID/...; absent means the AWS SDK's default chain (profiles, IMDS, STS). */
      credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
    };

export interface ServerConfig {
  dataDir: string;
  host: string;
  port: number;
  /** Base of every presigned URL; never taken from a request's Host header. */
  publicUrl: string;
  urlTtlSeconds: number;
  maxPageSize: number;
  maxFilesPerJob: number;
  /** Training-log lines kept per job; beyond it the oldest are dropped. */
  maxLogLinesPerJob: number;
  /** Largest JSON request body, in bytes. */
  jsonBodyLimit: number;
  logLevel: string;
  /** Part size of direct uploads (parts are PUT in parallel). */
  uploadPartSize: number;
  /** PostgreSQL URL for metadata; SQLite under dataDir when absent. */
  databaseUrl?: string;
  blobStore: BlobStoreConfig;
  /** Terminate TLS in the server itself (PEM files); plain HTTP when absent. */
  tls?: { certFile: string; keyFile: string };
  /**
   * Behind a reverse proxy: trust its X-Forwarded-* headers (true: any hop; a string: a
   * comma-separated list of proxy addresses or CIDRs). Off: the peer address is the client.
   */
  trustProxy: boolean | string;
  /** Per-API-key request rate; null (the default) is no limit. */
  rateLimit: RateLimit | null;
  connectionLimits: ConnectionLimits;
  /** On SIGTERM, how long in-flight requests may take before their connections are closed. */
  gracePeriodSeconds: number;
  /**
   * Behind nginx, the internal location (e.g. `/_ckpt_blobs`, no trailing slash) that serves the
   * local blob directory: downloads are verified here and answered with X-Accel-Redirect to it,
   * and nginx sends the bytes. Absent: ckpt sends them itself.
   */
  accelRedirect?: string;
  /** Prometheus /metrics on a listener of its own; off when absent (README "Operating ckpt"). */
  metrics?: { host: string; port: number };
  /** Server processes sharing the port (node:cluster); 1 is a single process, no cluster. */
  workers: number;
  /** How long /readyz waits for each store before calling it failed. */
  readinessTimeoutMs: number;
}

/** A token bucket per API key: `perSecond` requests a second on average, bursts up to `burst`. */
export interface RateLimit {
  perSecond: number;
  burst: number;
}

/**
 * What a slow or hostile client may hold. Uploads are large and legitimately long, so a body
 * streamed to the blob store is bounded by inactivity (idleTimeoutSeconds), never by a total time.
 */
export interface ConnectionLimits {
  /** The whole header block must arrive within this (slowloris). */
  headersTimeoutSeconds: number;
  /** A request whose body is buffered (JSON) must be complete within this after its headers. */
  requestTimeoutSeconds: number;
  /** No byte in either direction for this long in the middle of a request closes the connection. */
  idleTimeoutSeconds: number;
  /** Largest header block (request line included); 431 above. */
  maxHeaderBytes: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  headersTimeoutSeconds: 30,
  requestTimeoutSeconds: 30,
  idleTimeoutSeconds: 60,
  maxHeaderBytes: 16 * 1024,
};

export interface ServerFlags {
  dataDir?: string;
  host?: string;
  port?: string | number;
  publicUrl?: string;
  urlTtl?: string | number;
  maxPageSize?: string | number;
  logLevel?: string;
  databaseUrl?: string;
  blobStore?: string;
  maxFilesPerJob?: string | number;
  maxLogLinesPerJob?: string | number;
  jsonBodyLimit?: string | number;
  tlsCert?: string;
  tlsKey?: string;
  /** `--trust-proxy` alone is true; with a value, the proxies' addresses. */
  trustProxy?: boolean | string;
  rateLimit?: string;
  headersTimeout?: string | number;
  requestTimeout?: string | number;
  idleTimeout?: string | number;
  maxHeaderBytes?: string | number;
  gracePeriod?: string | number;
  accelRedirect?: string;
  metricsPort?: string | number;
  metricsHost?: string;
  workers?: string | number;
  readinessTimeout?: string | number;
}

const DEFAULT_URL_TTL_SECONDS = 7 * 24 * 3600;
const DEFAULT_MAX_PAGE_SIZE = 1000;

export class ConfigError extends Error {}

/**
 * The one reading of an S3 location (the blob store's CKPT_BLOB_STORE, `ckpt admin import`'s
 * source): `s3://bucket/some/prefix` -> `{ bucket: "bucket", prefix: "some/prefix/" }` (prefix ""
 * when absent). The prefix is taken literally (no percent-decoding), like the AWS CLI does.
 */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/?#]*)(?:\/([^?#]*))?$/i.exec(url);
  if (!m) throw new Error(`an S3 location must look like s3://bucket or s3://bucket/prefix (got ${JSON.stringify(url)})`);
  const bucket = m[1] ?? "";
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/.test(bucket))
    throw new Error(`${JSON.stringify(bucket)} is not a valid S3 bucket name (in ${JSON.stringify(url)})`);
  const path = (m[2] ?? "").replace(/\/+$/, "");
  if (path === "") return { bucket, prefix: "" };
  for (const segment of path.split("/")) {
    if (segment === "" || segment === "." || segment === "..")
      throw new Error(`the prefix of ${JSON.stringify(url)} must not contain empty, "." or ".." segments`);
  }
  return { bucket, prefix: `${path}/` };
}

/**
 * The environment as ckpt reads it: a CKPT_* variable (or BASETEN_API_KEY) set to the empty
 * string counts as unset, so `CKPT_API_KEY= ckpt ls` falls back to BASETEN_API_KEY and
 * `CKPT_PORT=` means the default port, never "port ''". Every reader of ckpt's variables goes
 * through this one function.
 */
export function ckptEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === "" && (name.startsWith("CKPT_") || name === "BASETEN_API_KEY")) continue;
    out[name] = value;
  }
  return out;
}

function integer(name: string, raw: string | number | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined || raw === "") return fallback;
  const value = typeof raw === "number" ? raw : /^[0-9]+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max)
    throw new ConfigError(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})`);
  return value;
}

export function loadServerConfig(flags: ServerFlags = {}, rawEnv: NodeJS.ProcessEnv = process.env): ServerConfig {
  const env = ckptEnv(rawEnv);
  const host = flags.host ?? env.CKPT_HOST ?? "127.0.0.1";
  const port = integer("port", flags.port ?? env.CKPT_PORT, 8787, 0, 65535);
  const tls = tlsConfig(flags.tlsCert ?? env.CKPT_TLS_CERT, flags.tlsKey ?? env.CKPT_TLS_KEY);
  const scheme = tls ? "https" : "http";
  const displayHost = host.includes(":") ? `[${host}]` : host === "0.0.0.0" ? "127.0.0.1" : host;
  const publicUrl = (flags.publicUrl ?? env.CKPT_PUBLIC_URL ?? `${scheme}://${displayHost}:${port}`).replace(/\/+$/, "");
  try {
    const parsed = new URL(publicUrl);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error();
  } catch {
    throw new ConfigError(`public URL must be an absolute http(s) URL (got ${JSON.stringify(publicUrl)})`);
  }
  const databaseUrl = flags.databaseUrl ?? env.CKPT_DATABASE_URL;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl))
    throw new ConfigError("CKPT_DATABASE_URL must be a postgres:// URL");
  const blobStore = blobStoreConfig(flags.blobStore ?? env.CKPT_BLOB_STORE, env);
  const accelRedirect = accelRedirectConfig(flags.accelRedirect ?? env.CKPT_ACCEL_REDIRECT);
  if (accelRedirect !== undefined && blobStore.kind !== "local")
    throw new ConfigError("CKPT_ACCEL_REDIRECT applies to the local blob store only (S3 clients download from the store itself)");
  return {
    databaseUrl: databaseUrl || undefined,
    blobStore,
    accelRedirect,
    dataDir: resolve(flags.dataDir ?? env.CKPT_DATA_DIR ?? "./ckpt-data"),
    host,
    port,
    publicUrl,
    urlTtlSeconds: integer("url TTL", flags.urlTtl ?? env.CKPT_URL_TTL, DEFAULT_URL_TTL_SECONDS, 1, 365 * 24 * 3600),
    maxPageSize: integer("max page size", flags.maxPageSize ?? env.CKPT_MAX_PAGE_SIZE, DEFAULT_MAX_PAGE_SIZE, 1, 100_000),
    maxFilesPerJob: integer("max files per job", flags.maxFilesPerJob ?? env.CKPT_MAX_FILES_PER_JOB, 10_000_000, 1, 1_000_000_000),
    maxLogLinesPerJob: integer("max log lines per job", flags.maxLogLinesPerJob ?? env.CKPT_MAX_LOG_LINES_PER_JOB, 200_000, 1, 100_000_000),
    uploadPartSize: integer("upload part size", env.CKPT_UPLOAD_PART_SIZE, 64 << 20, 5 << 20, 5 << 30),
    jsonBodyLimit: integer("JSON body limit", flags.jsonBodyLimit ?? env.CKPT_JSON_BODY_LIMIT, 1 << 20, 1024, 64 << 20),
    logLevel: flags.logLevel ?? env.CKPT_LOG_LEVEL ?? "info",
    tls,
    trustProxy: trustProxyConfig(flags.trustProxy ?? env.CKPT_TRUST_PROXY),
    rateLimit: rateLimitConfig(flags.rateLimit ?? env.CKPT_RATE_LIMIT),
    connectionLimits: {
      headersTimeoutSeconds: integer("headers timeout", flags.headersTimeout ?? env.CKPT_HEADERS_TIMEOUT, DEFAULT_CONNECTION_LIMITS.headersTimeoutSeconds, 1, 3600),
      requestTimeoutSeconds: integer("request timeout", flags.requestTimeout ?? env.CKPT_REQUEST_TIMEOUT, DEFAULT_CONNECTION_LIMITS.requestTimeoutSeconds, 1, 3600),
      idleTimeoutSeconds: integer("idle timeout", flags.idleTimeout ?? env.CKPT_IDLE_TIMEOUT, DEFAULT_CONNECTION_LIMITS.idleTimeoutSeconds, 1, 3600),
      maxHeaderBytes: integer("max header bytes", flags.maxHeaderBytes ?? env.CKPT_MAX_HEADER_BYTES, DEFAULT_CONNECTION_LIMITS.maxHeaderBytes, 1024, 1 << 20),
    },
    gracePeriodSeconds: integer("grace period", flags.gracePeriod ?? env.CKPT_GRACE_PERIOD, 30, 0, 3600),
    metrics: metricsConfig(flags.metricsPort ?? env.CKPT_METRICS_PORT, flags.metricsHost ?? env.CKPT_METRICS_HOST, port),
    workers: integer("workers", flags.workers ?? env.CKPT_WORKERS, availableParallelism(), 1, 256),
    readinessTimeoutMs: integer("readiness timeout", flags.readinessTimeout ?? env.CKPT_READINESS_TIMEOUT_MS, 2000, 10, 60_000),
  };
}

function metricsConfig(rawPort: string | number | undefined, rawHost: string | undefined, apiPort: number): ServerConfig["metrics"] {
  if (rawPort === undefined || rawPort === "") return undefined;
  const port = integer("metrics port", rawPort, 0, 1, 65535);
  if (port === apiPort) throw new ConfigError(`the metrics port must differ from the API port (both ${port})`);
  const host = rawHost === undefined || rawHost === "" ? "127.0.0.1" : rawHost;
  return { host, port };
}

function tlsConfig(certFile: string | undefined, keyFile: string | undefined): ServerConfig["tls"] {
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new ConfigError("TLS needs both --tls-cert and --tls-key (env CKPT_TLS_CERT, CKPT_TLS_KEY)");
  return { certFile: resolve(certFile), keyFile: resolve(keyFile) };
}

function trustProxyConfig(raw: boolean | string | undefined): boolean | string {
  if (raw === undefined || raw === false) return false;
  if (raw === true) return true;
  const value = raw.trim().toLowerCase();
  if (["", "false", "0", "off"].includes(value)) return false;
  if (["true", "1", "on"].includes(value)) return true;
  // Addresses, CIDRs or proxy-addr names (loopback, uniquelocal...), as Fastify takes them.
  if (!/^[0-9a-z.:/]+(\s*,\s*[0-9a-z.:/]+)*$/.test(value))
    throw new ConfigError(`trust proxy must be true, false or a comma-separated list of addresses/CIDRs (got ${JSON.stringify(raw)})`);
  return value;
}

/**
 * An nginx URI prefix: absolute, plain characters only (it is written into a header and matched
 * by a location), and not under /blobs/, where the redirect would come back to ckpt in a loop.
 */
function accelRedirectConfig(raw: string | undefined): string | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const prefix = raw.trim().replace(/\/+$/, "");
  if (!/^(\/[A-Za-z0-9._~-]+)+$/.test(prefix) || prefix.split("/").some((s) => s === "." || s === ".."))
    throw new ConfigError(`accel redirect must be an nginx location path like /_ckpt_blobs (got ${JSON.stringify(raw)})`);
  if (prefix === "/blobs" || prefix.startsWith("/blobs/") || prefix === "/v1" || prefix.startsWith("/v1/"))
    throw new ConfigError(`accel redirect must be an internal location of its own, not under /blobs or /v1 (got ${JSON.stringify(raw)})`);
  return prefix;
}

/** `RATE[:BURST]` requests per second per key, e.g. `20` or `20:100`; `0`/`off` (the default) is none. */
function rateLimitConfig(raw: string | undefined): RateLimit | null {
  if (raw === undefined || ["", "0", "off", "false"].includes(raw.trim().toLowerCase())) return null;
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*(?::\s*([0-9]+)\s*)?$/.exec(raw);
  const perSecond = m ? Number(m[1]) : NaN;
  const burst = m?.[2] !== undefined ? Number(m[2]) : Math.max(1, Math.ceil(perSecond));
  if (!m || !(perSecond > 0) || perSecond > 1_000_000 || !Number.isSafeInteger(burst) || burst < 1)
    throw new ConfigError(`rate limit must be RATE[:BURST] requests per second, e.g. 20 or 20:100 (got ${JSON.stringify(raw)})`);
  return { perSecond, burst };
}

function blobStoreConfig(raw: string | undefined, env: NodeJS.ProcessEnv): BlobStoreConfig {
  if (raw === undefined || raw === "" || raw === "local") return { kind: "local" };
  let location: { bucket: string; prefix: string };
  try {
    location = parseS3Url(raw);
  } catch (err) {
    throw new ConfigError(`CKPT_BLOB_STORE must be 'local' or s3://bucket[/prefix]: ${(err as Error).message}`);
  }
  const forcePathStyle = (env.CKPT_S3_FORCE_PATH_STYLE ?? (env.CKPT_S3_ENDPOINT ? "true" : "false")).toLowerCase();
  if (!["true", "false", "1", "0"].includes(forcePathStyle)) throw new ConfigError("CKPT_S3_FORCE_PATH_STYLE must be true or false");
  return {
    kind: "s3",
    bucket: location.bucket,
    prefix: location.prefix,
    endpoint: s3Endpoint("CKPT_S3_ENDPOINT", env.CKPT_S3_ENDPOINT),
    publicEndpoint: s3Endpoint("CKPT_S3_PUBLIC_ENDPOINT", env.CKPT_S3_PUBLIC_ENDPOINT),
    region: env.CKPT_S3_REGION ?? env.AWS_REGION ?? "us-east-1",
    forcePathStyle: forcePathStyle === "true" || forcePathStyle === "1",
    credentials:
      env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
        ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN || undefined }
        : undefined,
  };
}

function s3Endpoint(name: string, raw: string | undefined): string | undefined {
  if (raw === undefined || raw === "") return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be an http(s) URL (got ${JSON.stringify(raw)})`);
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search || url.hash)
    throw new ConfigError(`${name} must be an http(s) URL without query (got ${JSON.stringify(raw)})`);
  return raw.replace(/\/+$/, "");
}
