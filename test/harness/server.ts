import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { loadServerConfig, type ServerConfig } from "../../src/config.js";
import { issueKey } from "../../src/domain/keys.js";
import type { CkptService } from "../../src/domain/service.js";
import { buildApp } from "../../src/server/app.js";
import { openRuntime, type Runtime } from "../../src/server/runtime.js";
import { startPostgres } from "./postgres.js";
import { startRgw } from "./rgw.js";

/**
 * Which stores a test server runs on. The API, client and CLI suites run once per backend:
 * scripts/run-tests.mjs reruns them with CKPT_TEST_BACKEND=postgres-s3.
 */
export type Backend = "sqlite-local" | "postgres-s3";
export const testBackend: Backend = process.env.CKPT_TEST_BACKEND === "postgres-s3" ? "postgres-s3" : "sqlite-local";

/** A port that was free a moment ago (the kernel picks it); good enough on loopback in tests. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface TestServer {
  backend: Backend;
  baseUrl: string;
  dataDir: string;
  config: ServerConfig;
  service: CkptService;
  app: FastifyInstance;
  /** Creates an API key for an organisation (created if needed) and returns the plaintext key. */
  createKey(org: string): Promise<string>;
  stop(): Promise<void>;
}

export interface TestServerOptions {
  env?: NodeJS.ProcessEnv;
  /** Reuse a data directory (e.g. to restart over the same data); a fresh one otherwise. */
  dataDir?: string;
}

/** A real ckpt server on loopback, in this process: real SQLite file, real blob files. */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "ckpt-test-"));
  const ownsDir = options.dataDir === undefined;
  const port = await freePort();
  const services = testBackend === "postgres-s3" ? await startScaleOutServices() : null;
  const config = loadServerConfig({ dataDir, port, host: "127.0.0.1" }, { ...options.env, ...services?.env });
  let runtime: Runtime;
  try {
    runtime = await openRuntime(config);
  } catch (err) {
    await services?.stop();
    throw err;
  }
  await runtime.service.recover();
  const app = await buildApp({ service: runtime.service, signer: runtime.signer, jsonBodyLimit: config.jsonBodyLimit });
  await app.listen({ host: "127.0.0.1", port });
  return {
    backend: testBackend,
    baseUrl: `http://127.0.0.1:${port}`,
    dataDir,
    config,
    service: runtime.service,
    app,
    async createKey(org: string) {
      const organisation = await runtime.service.metadata.ensureOrganisation(org);
      const key = issueKey();
      await runtime.service.metadata.insertApiKey({ keyId: key.keyId, orgId: organisation.id, secretHash: key.secretHash });
      return key.plaintext;
    },
    async stop() {
      // A test may leave a response unread (a download it only checked the status of); close()
      // would wait for it for as long as the keep-alive lasts, so cut every connection now.
      const closing = app.close();
      app.server.closeAllConnections();
      await closing;
      await runtime.close();
      await services?.stop();
      if (ownsDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A throwaway PostgreSQL cluster and Ceph RGW for one test server, and the env that points at them. */
async function startScaleOutServices(): Promise<{ env: NodeJS.ProcessEnv; stop(): Promise<void> }> {
  const [pg, rgw] = await Promise.all([startPostgres(), startRgw()]);
  const stop = async () => {
    await Promise.all([pg?.stop(), rgw?.stop()]);
  };
  if (!pg || !rgw) {
    await stop();
    throw new Error("CKPT_TEST_BACKEND=postgres-s3 needs PostgreSQL and Ceph RGW installed");
  }
  const bucket = await rgw.createBucket();
  return {
    env: {
      CKPT_DATABASE_URL: await pg.createDatabase(),
      CKPT_BLOB_STORE: `s3://${bucket}/ckpt`,
      CKPT_S3_ENDPOINT: rgw.endpoint,
      CKPT_S3_REGION: rgw.region,
      CKPT_S3_FORCE_PATH_STYLE: "true",
      AWS_ACCESS_KEY_ID: rgw.accessKeyId,
      AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
    },
    stop,
  };
}

const here = dirname(fileURLToPath(import.meta.url));
/** The compiled CLI entry point (dist/src/cli/main.js), for tests that run `ckpt` as a process. */
export const CLI_PATH = join(here, "..", "..", "src", "cli", "main.js");

/** Runs the ckpt CLI to completion and returns its exit code and output. */
export function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...options.env },
      cwd: options.cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}

export interface ServerProcess {
  baseUrl: string;
  child: ChildProcess;
  /** Everything the server logged so far (stdout + stderr). */
  output(): string;
  /** Resolves with the exit code once the process is gone. */
  exited: Promise<number | null>;
}

/** `ckpt serve` as a child process, for tests that kill or signal the server. */
export async function spawnServer(dataDir: string, env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [CLI_PATH, "serve", "--port", String(port), "--data-dir", dataDir], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`ckpt serve exited early:\n${output}`);
    const ok = await fetch(`${baseUrl}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`ckpt serve did not come up:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { baseUrl, child, output: () => output, exited };
}
