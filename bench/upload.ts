/**
 * Scenario 5, upload: `ckpt push` of a checkpoint (large shards + many small files) against
 * `curl -T` of each file in turn, to the same `ckpt serve`, the same files.
 *
 * The anchor is one curl process uploading the files one after another over one keep-alive
 * connection (a config file of upload-file/url pairs): what a shell script would do, minus a
 * process start per file. Each round uploads into a fresh job (so push has nothing to skip),
 * checks the job lists every file, then deletes the job. The order of the sides rotates every
 * round. Where the CLI has `push --via-server`, the full run measures that too. The server's peak RSS is
 * sampled during each side's uploads. Target: ckpt faster, server memory bounded.
 * BENCH_CPU_PROF=<dir> makes the ckpt server and every `ckpt push` write a V8 CPU profile there;
 * BENCH_UPLOAD_ROUNDS=<n> runs more rounds; BENCH_PUSH_ARGS adds flags to `ckpt push` (e.g.
 * "--concurrency 16"); BENCH_SERVER_THREADS sets the server's UV_THREADPOOL_SIZE.
 *
 * `ckpt sync` of the same folder (the training side's engine: it hashes every file first, for
 * its resume journal, and sends through the same upload engine as push) is measured as a side
 * too. Figures and their history: BENCHMARKS.md, scenario 5.
 */
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { CKPT_CLI, GiB, MiB, RssSampler, run, startServer, tempDir, type ServerHandle } from "./lib.js";
import { fmt, median, row, type Row } from "./report.js";
import { seedSqlite, type SeededJob } from "./seed.js";

/** Peak server RSS we call bounded while it takes uploads of any size. */
const RSS_BOUND_MIB = 256;

export interface LocalCheckpoint {
  dir: string;
  files: { name: string; path: string; size: number }[];
  bytes: number;
}

function writeRandomFile(path: string, size: number, block: Buffer): void {
  const fd = openSync(path, "w");
  try {
    for (let written = 0; written < size; ) {
      const n = Math.min(block.length, size - written);
      writeSync(fd, block, 0, n);
      written += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** `shards` files of `shardBytes` and `small` files of 4-64 KiB, laid out like a HF checkpoint. */
export function makeCheckpoint(dir: string, shards: number, shardBytes: number, small: number): LocalCheckpoint {
  const files: LocalCheckpoint["files"] = [];
  const block = randomBytes(8 * MiB);
  const add = (name: string, size: number) => {
    const path = join(dir, name);
    mkdirSync(dirname(path), { recursive: true });
    // Vary the first bytes per file so no two files are identical.
    randomBytes(16).copy(block, 0);
    writeRandomFile(path, size, block);
    files.push({ name, path, size });
  };
  for (let i = 0; i < shards; i++) add(`checkpoint-000100/model-${String(i + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`, shardBytes);
  for (let i = 0; i < small; i++) add(`checkpoint-000100/extra/file-${String(i).padStart(4, "0")}.json`, 4096 + ((i * 7919) % 61441));
  return { dir, files, bytes: files.reduce((n, f) => n + f.size, 0) };
}

async function api(server: ServerHandle, job: SeededJob, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${server.baseUrl}/v1/training_projects/${job.projectId}${path}`, {
    method,
    headers: { authorization: `Api-Key ${job.apiKey}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

async function newJob(server: ServerHandle, job: SeededJob, name: string): Promise<string> {
  const created = (await api(server, job, "POST", "/jobs", { training_job: { name } })) as { training_job: { id: string } };
  return created.training_job.id;
}

async function assertListed(server: ServerHandle, job: SeededJob, jobId: string, expected: number): Promise<void> {
  const page = (await api(server, job, "GET", `/jobs/${jobId}/checkpoint_files?page_size=1`)) as { total_count: number };
  if (page.total_count !== expected) throw new Error(`job ${jobId} lists ${page.total_count} files, expected ${expected}`);
}

interface Phase {
  seconds: number;
  peakRssMiB: number;
}

async function measure(server: ServerHandle, work: () => Promise<unknown>): Promise<Phase> {
  const rss = new RssSampler(server.pid).start();
  const t0 = performance.now();
  try {
    await work();
  } finally {
    rss.stop();
  }
  return { seconds: (performance.now() - t0) / 1000, peakRssMiB: rss.peakMiB() };
}

export async function runUploadBench(opts: { quick: boolean }): Promise<Row[]> {
  const shards = opts.quick ? 2 : 4;
  const shardBytes = opts.quick ? 64 * MiB : 256 * MiB;
  const small = opts.quick ? 100 : 500;
  // BENCH_UPLOAD_ROUNDS: more rounds to average out a shared machine's noise.
  const rounds = Number(process.env.BENCH_UPLOAD_ROUNDS) || 2;

  const local = tempDir("upload-src");
  const data = tempDir("upload-data");
  const scratch = tempDir("upload-curl");
  const rows: Row[] = [];
  try {
    const ckpt = makeCheckpoint(local.path, shards, shardBytes, small);
    const job = await seedSqlite(data.path, 0);
    const prof = process.env.BENCH_CPU_PROF;
    const profArgs = prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : [];
    const server = await startServer({ dataDir: data.path, nodeArgs: profArgs, env: process.env.BENCH_SERVER_THREADS ? { UV_THREADPOOL_SIZE: process.env.BENCH_SERVER_THREADS } : {} });
    try {
      const cliEnv = { PATH: process.env.PATH, HOME: process.env.HOME, CKPT_API_URL: server.baseUrl, CKPT_API_KEY: job.apiKey };
      // Every file is complete already: a short settle, so the measure is the upload, not the wait.
      const sync = async (jobId: string) =>
        run(process.execPath, [...profArgs, CKPT_CLI, "sync", "--project", job.projectId, "--job", jobId, "--quiet", "--settle", "0.1", "--scan-interval", "0.1", ckpt.dir], { env: cliEnv });
      const push = async (jobId: string, extra: string[]) =>
        run(process.execPath, [...profArgs, CKPT_CLI, "push", "--project", job.projectId, "--job", jobId, "--node-rank", "0", "--quiet", ...extra, ...(process.env.BENCH_PUSH_ARGS ?? "").split(" ").filter(Boolean), ckpt.dir], { env: cliEnv });
      const curl = async (jobId: string) => {
        const config = join(scratch.path, `curl-${jobId}.conf`);
        const lines: string[] = [];
        for (const f of ckpt.files) {
          const path = f.name.split("/").map(encodeURIComponent).join("/");
          lines.push(`upload-file = ${JSON.stringify(f.path)}`, `url = ${JSON.stringify(`${server.baseUrl}/v1/training_projects/${job.projectId}/jobs/${jobId}/checkpoint_files/0/${path}`)}`, "output = /dev/null");
        }
        writeFileSync(config, lines.join("\n") + "\n");
        try {
          return await run("curl", ["-sS", "--fail", "-H", `Authorization: Api-Key ${job.apiKey}`, "-K", config]);
        } finally {
          rmSync(config, { force: true });
        }
      };

      // `ckpt push --via-server` (one streamed PUT per file, as curl does) where this build has it.
      const help = await run(process.execPath, [...profArgs, CKPT_CLI, "push", "--help"], { env: cliEnv, check: false });
      const viaServer = !opts.quick && help.stdout.includes("--via-server");
      const sides = viaServer ? (["ckpt", "curl", "via-server", "sync"] as const) : (["ckpt", "curl", "sync"] as const);
      const results: Record<string, Phase[]> = Object.fromEntries(sides.map((s) => [s, []]));
      for (let r = 0; r < rounds; r++) {
        for (let i = 0; i < sides.length; i++) {
          const side = sides[(i + r) % sides.length]!;
          const jobId = await newJob(server, job, `upload-${side}-${r}`);
          const phase = await measure(server, () =>
            side === "curl" ? curl(jobId) : side === "sync" ? sync(jobId) : push(jobId, side === "via-server" ? ["--via-server"] : []),
          );
          await assertListed(server, job, jobId, ckpt.files.length);
          results[side]!.push(phase);
          // Free the disk before the next round.
          await api(server, job, "DELETE", `/jobs/${jobId}`);
        }
      }
      // What a `ckpt` process costs before it does anything (module loading), for the notes.
      const startups: number[] = [];
      for (let i = 0; i < 3; i++) startups.push((await run(process.execPath, [...profArgs, CKPT_CLI, "push", "--help"], { env: cliEnv, check: false })).ms / 1000);
      const startup = median(startups);
      const mib = ckpt.bytes / MiB;
      const seconds = (side: string) => median(results[side]!.map((p) => p.seconds));
      const ours = seconds("ckpt");
      const theirs = seconds("curl");
      const what = `${shards} x ${shardBytes / MiB} MiB shards + ${small} files of 4-64 KiB (${fmt(ckpt.bytes / GiB)} GiB)`;
      rows.push(
        row({
          scenario: `5. upload ${what}: ckpt push vs curl -T each file in turn`,
          ckpt: mib / ours,
          anchor: mib / theirs,
          unit: "MiB/s",
          target: "> 1x (faster)",
          meets: (r) => r > 1,
          note:
            `${rounds} rotating rounds, median wall time ${fmt(ours)} s vs ${fmt(theirs)} s, of which ${fmt(startup)} s is the ckpt CLI starting (\`ckpt push --help\`); ` +
            "push sends 8 files at a time, largest first, each as one streamed PUT on the embedded store (small files read and hashed " +
            "in one read; large ones hashed first, as the PUT carries the digest up front); the server hashes and fsyncs every file",
        }),
      );
      if (viaServer)
        rows.push(
          row({
            scenario: "5. upload: ckpt push --via-server (one PUT per file) vs curl -T",
            ckpt: mib / seconds("via-server"),
            anchor: mib / theirs,
            unit: "MiB/s",
            note: `median wall time ${fmt(seconds("via-server"))} s vs ${fmt(theirs)} s`,
          }),
        );
      rows.push(
        row({
          scenario: "5. upload: ckpt sync of the same folder (complete files, --settle 0.1) vs curl -T",
          ckpt: mib / seconds("sync"),
          anchor: mib / theirs,
          unit: "MiB/s",
          note: `median wall time ${fmt(seconds("sync"))} s vs ${fmt(theirs)} s; sync hashes every file before sending it (its resume journal), 4 files at a time`,
        }),
      );
      const rssOurs = Math.max(...results.ckpt!.map((p) => p.peakRssMiB));
      const rssTheirs = Math.max(...results.curl!.map((p) => p.peakRssMiB));
      rows.push(
        row({
          scenario: "5. upload: server peak RSS during ckpt push vs during curl uploads",
          ckpt: rssOurs,
          anchor: rssTheirs,
          unit: "MiB",
          target: `bounded (< ${RSS_BOUND_MIB} MiB)`,
          meets: () => rssOurs < RSS_BOUND_MIB && rssTheirs < RSS_BOUND_MIB,
          note: `largest file ${shardBytes / MiB} MiB; ${fmt(ckpt.bytes / MiB)} MiB uploaded per round; sampled every 20 ms plus the kernel's VmHWM`,
        }),
      );
    } finally {
      await server.stop();
    }
  } finally {
    await local.remove();
    await data.remove();
    await scratch.remove();
  }
  return rows;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const { runStandalone } = await import("./run.js");
  await runStandalone([runUploadBench]);
}
