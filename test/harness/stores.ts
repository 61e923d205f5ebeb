import { ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { loadServerConfig, type ServerConfig } from "../../src/config.js";
import { startPostgres, type PostgresInstance } from "./postgres.js";
import { startRgw, type RgwInstance } from "./rgw.js";

/** Which stores a test server runs on; scripts/run-tests.mjs reruns suites with CKPT_TEST_BACKEND=postgres-s3. */
export type Backend = "sqlite-local" | "postgres-s3";
export const testBackend: Backend = process.env.CKPT_TEST_BACKEND === "postgres-s3" ? "postgres-s3" : "sqlite-local";

/**
 * The stores one test's ckpt processes share, on the backend under test: a data directory (SQLite
 * and blobs on the embedded default; only the URL-signing keyring otherwise) and, on
 * PostgreSQL + S3, a throwaway cluster and RGW. Tests reach the stores through this, so the same
 * test checks "nothing left behind" on either.
 */
export interface TestStores {
  backend: Backend;
  dataDir: string;
  /** What a ckpt process (or loadServerConfig) needs in its environment to use these stores. */
  env: NodeJS.ProcessEnv;
  /** The server config for these stores, as `ckpt serve --data-dir` would load it. */
  config(extraEnv?: NodeJS.ProcessEnv): ServerConfig;
  /**
   * Upload data not (yet) committed: the local temporary folder's entries, or S3 staging
   * objects and open multipart uploads.
   */
  pendingUploads(): Promise<string[]>;
  /** Keys of the stored blobs under `prefix` (e.g. `training_projects/p/jobs/j/`). */
  blobKeys(prefix: string): Promise<string[]>;
  /** Stores bytes at a blob key behind ckpt's back (what a crash or a bug could leave). */
  writeBlob(key: string, bytes: Buffer): Promise<void>;
  /**
   * On PostgreSQL + S3: stop and start each service for real (outage tests). Null on the
   * embedded default, which has no service to stop.
   */
  services: { stopPostgres(): Promise<void>; startPostgres(): Promise<void>; stopRgw(): Promise<void>; startRgw(): Promise<void> } | null;
  stop(): Promise<void>;
}

/**
 * What a `ckpt serve` (or admin command) needs to run on a fresh PostgreSQL database and a fresh
 * RGW bucket: the one place the scale-out environment of a test is spelled out.
 */
export async function scaleOutEnv(pg: PostgresInstance, rgw: RgwInstance, prefix = "ckpt/"): Promise<{ bucket: string; env: NodeJS.ProcessEnv }> {
  const bucket = await rgw.createBucket();
  return {
    bucket,
    env: {
      CKPT_DATABASE_URL: await pg.createDatabase(),
      CKPT_BLOB_STORE: `s3://${bucket}/${prefix}`,
      CKPT_S3_ENDPOINT: rgw.endpoint,
      CKPT_S3_REGION: rgw.region,
      CKPT_S3_FORCE_PATH_STYLE: "true",
      AWS_ACCESS_KEY_ID: rgw.accessKeyId,
      AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
    },
  };
}

export async function startStores(options: { dataDir?: string } = {}): Promise<TestStores> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "ckpt-test-"));
  const ownsDir = options.dataDir === undefined;
  const removeDir = () => {
    if (ownsDir) rmSync(dataDir, { recursive: true, force: true });
  };
  if (testBackend === "sqlite-local") {
    return {
      backend: testBackend,
      dataDir,
      env: {},
      config: (extraEnv = {}) => loadServerConfig({ dataDir }, extraEnv),
      pendingUploads: async () => (existsSync(join(dataDir, "tmp")) ? readdirSync(join(dataDir, "tmp")) : []),
      blobKeys: async (prefix) => listFiles(join(dataDir, "blobs"), prefix),
      async writeBlob(key, bytes) {
        await mkdir(dirname(join(dataDir, "blobs", key)), { recursive: true });
        await writeFile(join(dataDir, "blobs", key), bytes);
      },
      services: null,
      stop: async () => removeDir(),
    };
  }
  const [pg, rgw] = await Promise.all([startPostgres(), startRgw()]);
  const stopServices = async () => {
    await Promise.all([pg?.stop(), rgw?.stop()]);
  };
  if (!pg || !rgw) {
    await stopServices();
    removeDir();
    throw new Error("CKPT_TEST_BACKEND=postgres-s3 needs PostgreSQL and Ceph RGW installed");
  }
  const prefix = "ckpt/";
  const { bucket, env } = await scaleOutEnv(pg, rgw, prefix);
  const s3 = new S3Client(rgw.s3Config);
  const listKeys = async (keyPrefix: string): Promise<string[]> => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: keyPrefix, ContinuationToken: token }));
      for (const object of page.Contents ?? []) keys.push(object.Key!);
      token = page.NextContinuationToken;
    } while (token);
    return keys;
  };
  return {
    backend: testBackend,
    dataDir,
    env,
    config: (extraEnv = {}) => loadServerConfig({ dataDir }, { ...env, ...extraEnv }),
    async pendingUploads() {
      const staged = await listKeys(`${prefix}.ckpt-staging/`);
      const open = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
      return [...staged, ...(open.Uploads ?? []).map((u) => `multipart upload of ${u.Key}`)];
    },
    blobKeys: async (keyPrefix) => (await listKeys(prefix + keyPrefix)).map((key) => key.slice(prefix.length)),
    async writeBlob(key, bytes) {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + key, Body: bytes }));
    },
    services: {
      stopPostgres: () => pg.stopServer(),
      startPostgres: () => pg.startServer(),
      stopRgw: () => rgw.stopGateway(),
      startRgw: () => rgw.startGateway(),
    },
    async stop() {
      s3.destroy();
      await stopServices();
      removeDir();
    },
  };
}

/** Files under `root` whose path relative to it starts with `prefix`, as '/'-separated keys. */
async function listFiles(root: string, prefix: string): Promise<string[]> {
  const start = join(root, prefix);
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else out.push(relative(root, path).split("\\").join("/"));
    }
  };
  await walk(existsSync(start) ? start : dirname(start));
  return out.filter((key) => key.startsWith(prefix)).sort();
}
