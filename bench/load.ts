/**
 * Load: many clients listing, downloading and uploading at once against a real `ckpt serve`
 * (the embedded default, SQLite + local disk, as a child process) on loopback, for a bounded
 * time. Reports requests/s, p50/p99 latency and errors per operation; an error is any failed
 * request, unexpected status or short body, and a healthy server has none.
 *
 *   node dist/bench/load.js [--seconds 10] [--clients 16] [--json]
 *
 * Each client runs one request at a time, choosing list (40 %), download (40 %) or upload
 * (20 %) at random: pages of a job that grows as the run goes, whole-file downloads through
 * presigned URLs, and 256 KiB uploads that are new files or replacements.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { Agent, request } from "undici";
import { loadServerConfig } from "../src/config.js";
import { issueKey } from "../src/domain/keys.js";
import { openMetadataStore } from "../src/server/runtime.js";
import { spawnServer } from "../test/harness/server.js";

export interface LoadOptions {
  seconds: number;
  clients: number;
  /** Size of each seeded and uploaded file (default 256 KiB). */
  fileBytes?: number;
  /** Files in the job before the clock starts (default 200). */
  seedFiles?: number;
  /** Stores to run on: the server's environment (e.g. CKPT_DATABASE_URL, CKPT_BLOB_STORE) and data dir. Default: a fresh embedded store. */
  stores?: { dataDir: string; env: NodeJS.ProcessEnv };
}

export interface OperationFigures {
  requests: number;
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

export type Operation = "list" | "download" | "upload";

export interface LoadResult {
  seconds: number;
  clients: number;
  operations: Record<Operation | "all", OperationFigures>;
  /** The first few errors, to say what went wrong when `errors` is not 0. */
  errorSamples: string[];
}

const MIX: [Operation, number][] = [
  ["list", 0.4],
  ["download", 0.4],
  ["upload", 0.2],
];

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const fileBytes = options.fileBytes ?? 256 * 1024;
  const dataDir = options.stores?.dataDir ?? mkdtempSync(join(tmpdir(), "ckpt-load-"));
  const storesEnv = options.stores?.env ?? {};
  const server = await spawnServer(dataDir, { ...storesEnv, CKPT_LOG_LEVEL: "warn" });
  const agent = new Agent({ connections: options.clients, pipelining: 1 });
  try {
    const headers = { authorization: `Api-Key ${await createKey(dataDir, storesEnv)}`, "content-type": "application/json" };
    const call = async (method: "GET" | "POST" | "PUT", path: string, body?: string | Buffer) => {
      const r = await request(server.baseUrl + path, { method, headers, body, dispatcher: agent });
      const text = await r.body.text();
      return { status: r.statusCode, json: () => JSON.parse(text) };
    };
    const project = (await call("POST", "/v1/training_projects", JSON.stringify({ training_project: { name: "load" } }))).json().training_project;
    const job = (await call("POST", `/v1/training_projects/${project.id}/jobs`, JSON.stringify({ training_job: {} }))).json().training_job;
    const jobPath = `/v1/training_projects/${project.id}/jobs/${job.id}`;
    const payload = randomBytes(fileBytes);
    const seedFiles = options.seedFiles ?? 200;
    let seeded = 0;
    await Promise.all(
      Array.from({ length: options.clients }, async () => {
        for (let i = seeded++; i < seedFiles; i = seeded++) {
          const put = await call("PUT", `${jobPath}/checkpoint_files/0/seed/${i}.bin`, payload);
          if (put.status !== 201) throw new Error(`seeding failed with ${put.status}`);
        }
      }),
    );
    // Download URLs come from listings, as a real client gets them; refreshed by every list.
    let urls: string[] = (await call("GET", `${jobPath}/checkpoint_files?page_size=1000`)).json().presigned_urls.map((f: { url: string }) => f.url);

    const latencies: Record<Operation, number[]> = { list: [], download: [], upload: [] };
    const errors: Record<Operation, number> = { list: 0, download: 0, upload: 0 };
    const errorSamples: string[] = [];
    const fail = (op: Operation, what: string) => {
      errors[op]++;
      if (errorSamples.length < 10) errorSamples.push(`${op}: ${what}`);
    };

    const operations: Record<Operation, (client: number, n: number) => Promise<void>> = {
      list: async () => {
        const page = Math.floor(Math.random() * 3);
        const r = await call("GET", `${jobPath}/checkpoint_files?page_size=100&page_token=${page * 100}`);
        if (r.status !== 200) return fail("list", `status ${r.status}`);
        const listed = r.json().presigned_urls.map((f: { url: string }) => f.url);
        if (listed.length > 0) urls = listed;
      },
      download: async () => {
        const url = urls[Math.floor(Math.random() * urls.length)]!;
        const r = await request(url, { dispatcher: agent });
        let size = 0;
        for await (const chunk of r.body) size += (chunk as Buffer).length;
        // Uploads replace the files under load/: the URL of a replaced version is a 404 by design
        // (each version has its own key), the answer a client re-lists on.
        if (r.statusCode === 404 && url.includes("/load/")) return;
        if (r.statusCode !== 200) return fail("download", `status ${r.statusCode}`);
        if (size !== fileBytes) fail("download", `${size} of ${fileBytes} bytes`);
      },
      upload: async (client, n) => {
        // Ten names per client: the first round creates files, later rounds replace them.
        const r = await call("PUT", `${jobPath}/checkpoint_files/1/load/c${client}-${n % 10}.bin`, payload);
        if (r.status !== 201) fail("upload", `status ${r.status}`);
      },
    };

    const pick = (): Operation => {
      let x = Math.random();
      for (const [op, weight] of MIX) if ((x -= weight) < 0) return op;
      return MIX[0]![0];
    };
    const started = performance.now();
    const deadline = started + options.seconds * 1000;
    await Promise.all(
      Array.from({ length: options.clients }, async (_, client) => {
        for (let n = 0; performance.now() < deadline; n++) {
          const op = pick();
          const t0 = performance.now();
          try {
            await operations[op](client, n);
          } catch (err) {
            fail(op, (err as Error).message);
          }
          latencies[op].push(performance.now() - t0);
        }
      }),
    );
    const elapsedSeconds = (performance.now() - started) / 1000;

    const figures = (samples: number[], errorCount: number): OperationFigures => {
      const sorted = [...samples].sort((a, b) => a - b);
      return {
        requests: sorted.length,
        requestsPerSec: round(sorted.length / elapsedSeconds),
        p50Ms: round(percentile(sorted, 0.5)),
        p99Ms: round(percentile(sorted, 0.99)),
        errors: errorCount,
      };
    };
    const all = [...latencies.list, ...latencies.download, ...latencies.upload];
    return {
      seconds: round(elapsedSeconds),
      clients: options.clients,
      operations: {
        list: figures(latencies.list, errors.list),
        download: figures(latencies.download, errors.download),
        upload: figures(latencies.upload, errors.upload),
        all: figures(all, errors.list + errors.download + errors.upload),
      },
      errorSamples,
    };
  } finally {
    await agent.close();
    server.child.kill("SIGTERM");
    await server.exited;
    if (!options.stores) rmSync(dataDir, { recursive: true, force: true });
  }
}

/** What `ckpt admin create-key` does, without starting another process. */
async function createKey(dataDir: string, env: NodeJS.ProcessEnv): Promise<string> {
  const store = await openMetadataStore(loadServerConfig({ dataDir }, env));
  try {
    const org = await store.ensureOrganisation("load");
    const key = issueKey();
    await store.insertApiKey({ keyId: key.keyId, orgId: org.id, secretHash: key.secretHash });
    return key.plaintext;
  } finally {
    await store.close();
  }
}

/** Nearest-rank percentile of sorted values; 0 when there are none. */
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}

const round = (x: number) => Math.round(x * 10) / 10;

export function formatLoad(result: LoadResult): string {
  const rows = (Object.entries(result.operations) as [string, OperationFigures][]).map(([op, f]) =>
    [op, f.requests, f.requestsPerSec, f.p50Ms, f.p99Ms, f.errors].map(String),
  );
  const table = [["operation", "requests", "req/s", "p50 ms", "p99 ms", "errors"], ...rows];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  const lines = table.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
  const header = `${result.clients} clients for ${result.seconds} s against ckpt serve (SQLite + local disk) on loopback`;
  return [header, ...lines, ...result.errorSamples.map((e) => `error: ${e}`)].join("\n") + "\n";
}

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i === -1) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} needs a positive integer`);
  return value;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await runLoad({ seconds: flag("seconds", 10), clients: flag("clients", 16) });
  process.stdout.write(process.argv.includes("--json") ? JSON.stringify(result, null, 2) + "\n" : formatLoad(result));
  process.exitCode = result.operations.all.errors === 0 ? 0 : 1;
}
