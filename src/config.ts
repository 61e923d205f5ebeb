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
  /** Largest JSON request body, in bytes. */
  jsonBodyLimit: number;
  logLevel: string;
  /** PostgreSQL URL for metadata; SQLite under dataDir when absent. */
  databaseUrl?: string;
  blobStore: BlobStoreConfig;
}

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
}

export const DEFAULT_URL_TTL_SECONDS = 7 * 24 * 3600;
export const DEFAULT_MAX_PAGE_SIZE = 1000;

export class ConfigError extends Error {}

function integer(name: string, raw: string | number | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined || raw === "") return fallback;
  const value = typeof raw === "number" ? raw : /^[0-9]+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max)
    throw new ConfigError(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})`);
  return value;
}

export function loadServerConfig(flags: ServerFlags = {}, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const host = flags.host ?? env.CKPT_HOST ?? "127.0.0.1";
  const port = integer("port", flags.port ?? env.CKPT_PORT, 8787, 0, 65535);
  const displayHost = host.includes(":") ? `[${host}]` : host === "0.0.0.0" ? "127.0.0.1" : host;
  const publicUrl = (flags.publicUrl ?? env.CKPT_PUBLIC_URL ?? `http://${displayHost}:${port}`).replace(/\/+$/, "");
  try {
    const parsed = new URL(publicUrl);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error();
  } catch {
    throw new ConfigError(`public URL must be an absolute http(s) URL (got ${JSON.stringify(publicUrl)})`);
  }
  const databaseUrl = flags.databaseUrl ?? env.CKPT_DATABASE_URL;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl))
    throw new ConfigError("CKPT_DATABASE_URL must be a postgres:// URL");
  return {
    databaseUrl: databaseUrl || undefined,
    blobStore: blobStoreConfig(flags.blobStore ?? env.CKPT_BLOB_STORE, env),
    dataDir: resolve(flags.dataDir ?? env.CKPT_DATA_DIR ?? "./ckpt-data"),
    host,
    port,
    publicUrl,
    urlTtlSeconds: integer("url TTL", flags.urlTtl ?? env.CKPT_URL_TTL, DEFAULT_URL_TTL_SECONDS, 1, 365 * 24 * 3600),
    maxPageSize: integer("max page size", flags.maxPageSize ?? env.CKPT_MAX_PAGE_SIZE, DEFAULT_MAX_PAGE_SIZE, 1, 100_000),
    maxFilesPerJob: integer("max files per job", env.CKPT_MAX_FILES_PER_JOB, 10_000_000, 1, 1_000_000_000),
    jsonBodyLimit: integer("JSON body limit", env.CKPT_JSON_BODY_LIMIT, 1 << 20, 1024, 64 << 20),
    logLevel: flags.logLevel ?? env.CKPT_LOG_LEVEL ?? "info",
  };
}

function blobStoreConfig(raw: string | undefined, env: NodeJS.ProcessEnv): BlobStoreConfig {
  if (raw === undefined || raw === "" || raw === "local") return { kind: "local" };
  const m = /^s3:\/\/([^/?#]+)\/?([^?#]*)$/.exec(raw);
  if (!m) throw new ConfigError(`CKPT_BLOB_STORE must be 'local' or s3://bucket[/prefix] (got ${JSON.stringify(raw)})`);
  const prefix = m[2]!.replace(/^\/+|\/+$/g, "");
  const forcePathStyle = (env.CKPT_S3_FORCE_PATH_STYLE ?? (env.CKPT_S3_ENDPOINT ? "true" : "false")).toLowerCase();
  if (!["true", "false", "1", "0"].includes(forcePathStyle)) throw new ConfigError("CKPT_S3_FORCE_PATH_STYLE must be true or false");
  return {
    kind: "s3",
    bucket: m[1]!,
    prefix: prefix ? `${prefix}/` : "",
    endpoint: env.CKPT_S3_ENDPOINT || undefined,
    region: env.CKPT_S3_REGION ?? env.AWS_REGION ?? "us-east-1",
    forcePathStyle: forcePathStyle === "true" || forcePathStyle === "1",
    credentials:
      env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
        ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN || undefined }
        : undefined,
  };
}
