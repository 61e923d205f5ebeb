import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { GcReport } from "../../src/domain/gc.js";
import { issueKey } from "../../src/domain/keys.js";
import { openMetadataStore, openRuntime } from "../../src/server/runtime.js";
import { CLI_PATH, spawnServer, type ServerProcess } from "../harness/server.js";
import type { TestStores } from "../harness/stores.js";
import { api } from "../helpers/api.js";

/** Shared by the hardening tests, which mostly drive `ckpt serve` and `ckpt admin` as processes. */
export function freshDataDir(prefix = "ckpt-hard-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * What `ckpt admin create-key` does, in this process: starting a CLI process costs a second of
 * CPU, and the CLI itself is tested in test/server. A running server sees the key at once.
 */
export async function createKey(stores: TestStores, org = "acme"): Promise<string> {
  const store = await openMetadataStore(stores.config());
  try {
    const organisation = await store.ensureOrganisation(org);
    const key = issueKey();
    await store.insertApiKey({ keyId: key.keyId, orgId: organisation.id, secretHash: key.secretHash });
    return key.plaintext;
  } finally {
    await store.close();
  }
}

/** What `ckpt admin gc` does, in this process (the command itself is run in faults.test.ts). */
export async function collectGarbageIn(stores: TestStores, options: { dryRun?: boolean; minAgeMs?: number } = {}): Promise<GcReport> {
  const runtime = await openRuntime(stores.config());
  try {
    return await runtime.service.collectGarbage({ dryRun: options.dryRun ?? false, minAgeMs: options.minAgeMs ?? 3_600_000 });
  } finally {
    await runtime.close();
  }
}

export async function projectAndJob(baseUrl: string, key: string, name = "p") {
  const client = api(baseUrl, key);
  const project = (await client.post("/v1/training_projects", { training_project: { name } })).body.training_project;
  const job = (await client.post(`/v1/training_projects/${project.id}/jobs`, { training_job: {} })).body.training_job;
  assert.ok(project?.id && job?.id, "project and job created");
  return { client, project, job, jobPath: `/v1/training_projects/${project.id}/jobs/${job.id}` };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns true; fails with `what` after `timeoutMs`. Not a timing assertion: the bound is generous. */
export async function eventually(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) assert.fail(`never happened: ${what}`);
    await sleep(50);
  }
}

/**
 * A raw PUT that sends `first` at once and `rest` (a chunk every `gapMs`) only once `release()` is
 * called: an upload the test knows to be in flight while it acts (signals, runs gc, ...).
 */
export function heldUpload(url: string, key: string, first: Buffer, rest: Buffer[], gapMs = 0) {
  const total = [first, ...rest].reduce((n, c) => n + c.length, 0);
  let sentFirst!: () => void;
  const firstSent = new Promise<void>((resolve) => (sentFirst = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpRequest(url, { method: "PUT", headers: { authorization: `Api-Key ${key}`, "content-length": total }, agent: false }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.write(first, () => sentFirst());
    void released.then(async () => {
      for (const chunk of rest) {
        req.write(chunk);
        if (gapMs > 0) await sleep(gapMs);
      }
      req.end();
    });
  });
  return { firstSent, release, response };
}

/** `ckpt serve` as a process on the test's stores (the backend under test). */
export function serveOn(stores: TestStores, env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  return spawnServer(stores.dataDir, { ...stores.env, ...env });
}

/** A raw TCP connection to a server, recording what comes back and when it is closed. */
export function rawConnection(baseUrl: string): { socket: Socket; received: () => string; closed: Promise<void> } {
  const { hostname, port } = new URL(baseUrl);
  const socket = connect(Number(port), hostname);
  let received = "";
  socket.on("data", (d) => (received += d));
  socket.on("error", () => {}); // a reset is one way of being cut off
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  return { socket, received: () => received, closed };
}

/** Writes one piece every `everyMs` until all are written or the socket is closed; true if all went out. */
export function trickle(socket: Socket, pieces: (string | Buffer)[], everyMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let i = 0;
    const timer = setInterval(() => {
      if (socket.destroyed || !socket.writable) {
        clearInterval(timer);
        return resolve(false);
      }
      socket.write(pieces[i++]!);
      if (i === pieces.length) {
        clearInterval(timer);
        resolve(true);
      }
    }, everyMs);
  });
}

/** The JSON body of a raw HTTP/1.1 response (no chunked encoding: ckpt's error responses have a length). */
export function parseRawResponse(raw: string): { status: number; headers: Record<string, string>; body: any } {
  const [head, ...rest] = raw.split("\r\n\r\n");
  const [statusLine, ...headerLines] = head!.split("\r\n");
  const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
  const text = rest.join("\r\n\r\n");
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* keep the text */
  }
  return { status: Number(statusLine!.split(" ")[1]), headers, body };
}

/**
 * `ckpt serve` with any flags, ready once it logs "ckpt serving" (spawnServer in the harness
 * probes plain-HTTP /healthz, which a TLS server does not answer).
 */
export async function spawnServe(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [CLI_PATH, "serve", ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  await eventually("ckpt serve is up", () => {
    if (child.exitCode !== null) assert.fail(`ckpt serve exited early:\n${output}`);
    return output.includes("ckpt serving");
  });
  return { child, output: () => output, exited };
}
