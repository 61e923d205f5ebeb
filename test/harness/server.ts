import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { loadServerConfig, type ServerConfig } from "../../src/config.js";
import { issueKey } from "../../src/domain/keys.js";
import { blobKeyOfFile } from "../../src/domain/names.js";
import type { CkptService } from "../../src/domain/service.js";
import { buildApp } from "../../src/server/app.js";
import { openRuntime, type Runtime } from "../../src/server/runtime.js";
import { startStores, testBackend, type Backend, type TestStores } from "./stores.js";

export { testBackend, type Backend } from "./stores.js";

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

/**
 * Runs `start` on a free port, and again on another when the port was taken (EADDRINUSE) between
 * picking it and listening on it: a test file running alongside can take it in between.
 */
async function onFreePort<T>(start: (port: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start(await freePort());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || attempt >= 5) throw err;
    }
  }
}

export interface TestServer {
  backend: Backend;
  baseUrl: string;
  dataDir: string;
  config: ServerConfig;
  service: CkptService;
  app: FastifyInstance;
  /** The stores it runs on (to look behind its back: pending uploads, blob keys). */
  stores: TestStores;
  /**
   * Where presigned URLs' bytes come from: this server's blob route, or the S3 endpoint. A proxy
   * put in front (test/client/support/http-proxy.ts) sends paths under `blobPathPrefix` there.
   */
  blobOrigin: string;
  /** "/blobs/" on the local store; "/<bucket>/" on S3 (path-style URLs). */
  blobPathPrefix: string;
  /** The URL path (no query) of the presigned URL of one file's version listed now, to recognise its requests. */
  blobPath(projectId: string, jobId: string, rank: number, name: string): Promise<string>;
  /** Creates an API key for an organisation (created if needed) and returns the plaintext key. */
  createKey(org: string, options?: { email?: string }): Promise<string>;
  stop(): Promise<void>;
}

export interface TestServerOptions {
  env?: NodeJS.ProcessEnv;
  /** Reuse a data directory (e.g. to restart over the same data); a fresh one otherwise. */
  dataDir?: string;
}

/** A real ckpt server on loopback, in this process: real SQLite file, real blob files. */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const stores = await startStores({ dataDir: options.dataDir });
  const dataDir = stores.dataDir;
  let started: { port: number; config: ServerConfig; runtime: Runtime; app: FastifyInstance };
  try {
    // The port is in the config (the public URL presigned URLs point at) before the server listens on it.
    started = await onFreePort(async (port) => {
      const config = loadServerConfig({ dataDir, port, host: "127.0.0.1" }, { ...stores.env, ...options.env });
      const runtime = await openRuntime(config);
      let app: FastifyInstance | undefined;
      try {
        await runtime.service.recover();
        app = await buildApp({ service: runtime.service, signer: runtime.signer, servedBlobs: runtime.servedBlobs, jsonBodyLimit: config.jsonBodyLimit });
        await app.listen({ host: "127.0.0.1", port });
        return { port, config, runtime, app };
      } catch (err) {
        await app?.close();
        await runtime.close();
        throw err;
      }
    });
  } catch (err) {
    await stores.stop();
    throw err;
  }
  const { port, config, runtime, app } = started;
  const baseUrl = `http://127.0.0.1:${port}`;
  const s3 = config.blobStore.kind === "s3" ? config.blobStore : null;
  const blobPathPrefix = s3 ? `/${s3.bucket}/` : "/blobs/";
  return {
    backend: testBackend,
    baseUrl,
    dataDir,
    config,
    service: runtime.service,
    app,
    stores,
    blobOrigin: s3?.endpoint ?? baseUrl,
    blobPathPrefix,
    async blobPath(projectId, jobId, rank, name) {
      const file = await runtime.service.metadata.getFile(jobId, rank, name);
      if (!file) throw new Error(`no file ${name} in rank ${rank} of job ${jobId}`);
      return `${blobPathPrefix}${s3?.prefix ?? ""}${blobKeyOfFile(projectId, file).split("/").map(encodeURIComponent).join("/")}`;
    },
    async createKey(org: string, keyOptions: { email?: string } = {}) {
      const organisation = await runtime.service.metadata.ensureOrganisation(org);
      const key = issueKey();
      await runtime.service.metadata.insertApiKey({
        keyId: key.keyId,
        orgId: organisation.id,
        secretHash: key.secretHash,
        ownerEmail: keyOptions.email ?? null,
      });
      return key.plaintext;
    },
    async stop() {
      // A test may leave a response unread (a download it only checked the status of); close()
      // would wait for it for as long as the keep-alive lasts, so cut every connection now.
      const closing = app.close();
      app.server.closeAllConnections();
      await closing;
      await runtime.close();
      await stores.stop();
    },
  };
}

const here = dirname(fileURLToPath(import.meta.url));
/** The CLI as it ships (dist/cli/ckpt.cjs, bundled by scripts/bundle-cli.mjs), for tests that run `ckpt` as a process. */
export const CLI_PATH = join(here, "..", "..", "cli", "ckpt.cjs");

/** Runs the ckpt CLI to completion and returns its exit code and output. */
export function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string; nodeArgs?: string[] } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), CLI_PATH, ...args], {
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

/**
 * `ckpt serve` as a child process, for tests that kill or signal the server. One process unless
 * `env` sets CKPT_WORKERS (the tests about workers and draining do): each worker costs a start-up.
 */
export async function spawnServer(dataDir: string, env: NodeJS.ProcessEnv = {}, cli = CLI_PATH): Promise<ServerProcess> {
  return onFreePort((port) => spawnServerOn(port, dataDir, env, cli));
}

async function spawnServerOn(port: number, dataDir: string, env: NodeJS.ProcessEnv, cli: string): Promise<ServerProcess> {
  const child = spawn(process.execPath, [cli, "serve", "--port", String(port), "--data-dir", dataDir], {
    env: { PATH: process.env.PATH, CKPT_WORKERS: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000; // a loaded machine starting several workers
  for (;;) {
    if (child.exitCode !== null) {
      const error = new Error(`ckpt serve exited early:\n${output}`);
      throw /EADDRINUSE/.test(output) ? Object.assign(error, { code: "EADDRINUSE" }) : error;
    }
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
