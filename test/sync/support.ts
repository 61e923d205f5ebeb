import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { Agent as HttpAgent, createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { TestContext } from "node:test";
import { Agent, fetch as fetchWith } from "undici";
import { CkptClient } from "../../src/client/api.js";
import type { CheckpointFile } from "../../src/client/types.js";
import { CLI_PATH, startTestServer, type TestServer } from "../harness/server.js";

export const KiB = 1024;
export const sha256 = (bytes: Buffer): string => createHash("sha256").update(bytes).digest("hex");

/**
 * Chunk `index` of a file named `name`: deterministic, so the test knows every complete version
 * without reading the disk, and any prefix of a file differs from the whole in size and digest.
 * The training scripts carry this very function (as source), so script and test cannot disagree.
 */
export function chunkBytes(name: string, index: number, size: number): Buffer {
  const seed = createHash("sha256").update(`${name}:${index}`).digest();
  const out = Buffer.alloc(size);
  for (let offset = 0; offset < size; offset += seed.length) seed.copy(out, offset);
  return out;
}

/** A file the training script writes: `chunks` chunks of `chunkSize` bytes. */
export interface PlannedFile {
  name: string;
  chunks: number;
  chunkSize: number;
}

export function contentOf(file: PlannedFile): Buffer {
  return Buffer.concat(Array.from({ length: file.chunks }, (_, i) => chunkBytes(file.name, i, file.chunkSize)));
}

/**
 * The start of every training script: `writeSlowly` writes a planned file chunk by chunk with a
 * pause after each chunk, into $BT_CHECKPOINT_DIR (the Baseten name, as a real script would).
 * A script whose `ckpt run` is gone (killed by a test, or by a failing one's clean-up) stops
 * on its own, so no test leaves a writer behind.
 */
const SCRIPT_PRELUDE = `
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
const dir = process.env.BT_CHECKPOINT_DIR;
const parent = process.ppid;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const orphaned = () => process.ppid !== parent;
${chunkBytes.toString()}
async function writeSlowly(file, pauseMs) {
  const path = join(dir, file.name);
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, "w");
  for (let i = 0; i < file.chunks && !orphaned(); i++) {
    writeSync(fd, chunkBytes(file.name, i, file.chunkSize));
    await sleep(pauseMs);
  }
  closeSync(fd);
}
async function waitForFile(path, maxMs) {
  for (const end = Date.now() + maxMs; !existsSync(path) && Date.now() < end && !orphaned(); ) await sleep(20);
}
`;

export interface Workspace {
  path: string;
  /** Writes a training script (prelude + body) and returns its path. */
  script(name: string, body: string): string;
}

export function workspace(t: TestContext): Workspace {
  const path = mkdtempSync(join(tmpdir(), "ckpt-sync-test-"));
  t.after(() => rmSync(path, { recursive: true, force: true }));
  return {
    path,
    script(name, body) {
      const file = join(path, name);
      writeFileSync(file, `${SCRIPT_PRELUDE}\n${body}\n`);
      return file;
    },
  };
}

export interface CkptProcess {
  child: ChildProcess;
  stderr(): string;
  /** The process has ended (its output may still be flowing: children it left may hold the pipes). */
  exited: Promise<void>;
  /** The process has ended and its output is complete. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/**
 * `ckpt ARGS` as a child process with piped output. The test's `after` hook SIGKILLs it if it is
 * still running, so a failed assertion never leaves a process behind.
 */
export function startCkpt(t: TestContext, args: string[], env: NodeJS.ProcessEnv): CkptProcess {
  const child = spawn(process.execPath, [CLI_PATH, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  child.stdin!.end();
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  t.after(() => killIfRunning(child.pid));
  return { child, stderr: () => stderr, exited, done };
}

/** SIGKILL by pid, if that process still exists. */
export function killIfRunning(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    /* already gone */
  }
}

export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** A server, a key for a fresh organisation, an SDK client, and the env that points the CLI at it. */
export async function startSyncServer(t: TestContext): Promise<{ server: TestServer; client: CkptClient; env: NodeJS.ProcessEnv }> {
  const server = await startTestServer();
  t.after(() => server.stop());
  const apiKey = await server.createKey("org");
  return { server, client: new CkptClient({ apiUrl: server.baseUrl, apiKey }), env: { CKPT_API_URL: server.baseUrl, CKPT_API_KEY: apiKey } };
}

export async function listFiles(client: CkptClient, projectId: string, jobId: string): Promise<CheckpointFile[]> {
  const files: CheckpointFile[] = [];
  for await (const file of client.listCheckpointFiles({ projectId, jobId })) files.push(file);
  return files;
}

/**
 * The bytes behind a presigned URL. Over a connection of its own, closed afterwards: a kept-alive
 * connection after a large GET sometimes holds the test server's close() for a minute.
 */
export async function download(file: CheckpointFile): Promise<Buffer> {
  const dispatcher = new Agent();
  try {
    const response = await fetchWith(file.url, { dispatcher });
    if (!response.ok) throw new Error(`GET ${file.relative_file_name}: HTTP ${response.status}`);
    return Buffer.from(await response.arrayBuffer());
  } finally {
    await dispatcher.close();
  }
}

/** Every listed file of a rank with the digest of its downloaded bytes, by name. */
export async function listedDigests(client: CkptClient, projectId: string, jobId: string, nodeRank = 0): Promise<Record<string, string>> {
  const files = (await listFiles(client, projectId, jobId)).filter((f) => f.node_rank === nodeRank);
  const entries = await Promise.all(files.map(async (f) => [f.relative_file_name, sha256(await download(f))] as const));
  return Object.fromEntries(entries.sort(([a], [b]) => a.localeCompare(b)));
}

export function expectedDigests(files: PlannedFile[]): Record<string, string> {
  return Object.fromEntries(files.map((f) => [f.name, sha256(contentOf(f))] as const).sort(([a], [b]) => a.localeCompare(b)));
}

/** The engine options every CLI test passes: short settle and scan intervals keep tests fast. */
export const FAST = ["--settle", "0.5", "--scan-interval", "0.1"];

/** One request that passed an API proxy, with the body bytes it carried to the server. */
export interface ApiRequest {
  method: string;
  path: string;
  bodyBytes: number;
}

/**
 * A plain HTTP proxy in front of the API server that counts the request body bytes it passes:
 * pointed at with CKPT_API_URL, it sees every byte the CLI sends to the API server, and none of
 * what it sends to presigned URLs of S3 (those name the S3 endpoint, not the API server).
 */
export async function startApiCountingProxy(t: TestContext, target: string): Promise<{ url: string; requests(): ApiRequest[] }> {
  const seen: ApiRequest[] = [];
  const agent = new HttpAgent({ keepAlive: true });
  const server = createServer((req, res) => {
    const record: ApiRequest = { method: req.method ?? "GET", path: (req.url ?? "/").split("?")[0]!, bodyBytes: 0 };
    seen.push(record);
    req.on("data", (chunk: Buffer) => (record.bodyBytes += chunk.length));
    const upstream = httpRequest(target + req.url, { method: req.method, headers: req.headers, agent }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(async () => {
    server.closeAllConnections();
    agent.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => seen };
}
