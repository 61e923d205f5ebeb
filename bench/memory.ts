/**
 * Scenario 6, memory: is it bounded, and does it stay flat as the data grows?
 *
 *   - Server: peak RSS of `ckpt serve` while 50 clients (wrk, 50 connections) fetch random
 *     page_size=1000 pages of a 1,000,000-file job; anchor: the same load on a 10,000-file job.
 *   - Client: peak RSS of `ckpt download` fetching one 4 GiB file (512 MiB with --quick);
 *     anchor: the same for a file an eighth of that size.
 *
 * Peak = max of VmRSS sampled every 20 ms and the kernel's VmHWM. A ratio near 1 says memory
 * does not grow with the job size / the file size. Target: ratio <= 1.25 and the figure stated.
 */
import { pathToFileURL } from "node:url";
import { CKPT_CLI, GiB, MiB, RssSampler, run, rssMiB, startServer, tempDir, wrk } from "./lib.js";
import { fmt, row, type Row } from "./report.js";
import { JOB_FILES } from "./listing-depth.js";
import { seedSqlite, sharedSqliteJob, writeBlob, type SeededJob } from "./seed.js";

const CLIENTS = 50;
const SMALL_JOB_FILES = 10_000;

function randomPagesScript(job: SeededJob): string {
  const base = `/v1/training_projects/${job.projectId}/jobs/${job.jobId}/checkpoint_files?page_size=1000&page_token=`;
  return [`local base = ${JSON.stringify(base)}`, `request = function() return wrk.format("GET", base .. (math.random(0, ${job.fileCount / 1000 - 1}) * 1000)) end`].join("\n");
}

/** Peak RSS of a fresh server over `seconds` of 50 clients listing `job`; also its idle RSS. */
async function serverPeak(job: SeededJob & { dataDir: string }, seconds: number): Promise<{ peak: number; idle: number; pagesPerSec: number }> {
  const server = await startServer({ dataDir: job.dataDir });
  const scratch = tempDir("memory-wrk");
  try {
    const idle = rssMiB(server.pid);
    const rss = new RssSampler(server.pid).start();
    const got = await wrk({ url: server.baseUrl, seconds, connections: CLIENTS, headers: { Authorization: `Api-Key ${job.apiKey}` }, lua: randomPagesScript(job), dir: scratch.path });
    return { peak: rss.stop(), idle, pagesPerSec: got.requestsPerSec };
  } finally {
    await server.stop();
    await scratch.remove();
  }
}

/** Peak RSS of `ckpt download` fetching one file of `size` bytes (written straight into a blob dir). */
export async function clientPeak(size: number, extraArgs: string[] = []): Promise<{ peak: number; seconds: number }> {
  const data = tempDir("memory-dl");
  const out = tempDir("memory-dl-out");
  try {
    const file = { nodeRank: 0, relativeName: "checkpoint-000100/model.safetensors", sizeBytes: size };
    const job = await seedSqlite(data.path, 1, () => file);
    writeBlob(data.path, job, file);
    const server = await startServer({ dataDir: data.path });
    try {
      let sampler: RssSampler | null = null;
      const result = await run(process.execPath, [CKPT_CLI, "download", "--project", job.projectId, "--job", job.jobId, "--out", out.path, "--quiet", ...extraArgs], {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, CKPT_API_URL: server.baseUrl, CKPT_API_KEY: job.apiKey },
        onSpawn: (child) => {
          sampler = new RssSampler(child.pid!, 10).start();
        },
      });
      const peak = (sampler as RssSampler | null)?.stop() ?? Number.NaN;
      return { peak, seconds: result.ms / 1000 };
    } finally {
      await server.stop();
    }
  } finally {
    await out.remove();
    await data.remove();
  }
}

export async function runMemoryBench(opts: { quick: boolean }): Promise<Row[]> {
  const seconds = opts.quick ? 5 : 20;
  const bigJob = await sharedSqliteJob(JOB_FILES);
  const smallDir = tempDir("memory-small-job");
  const rows: Row[] = [];
  try {
    const smallJob = { ...(await seedSqlite(smallDir.path, SMALL_JOB_FILES)), dataDir: smallDir.path };
    const big = await serverPeak(bigJob, seconds);
    const small = await serverPeak(smallJob, seconds);
    rows.push(
      row({
        scenario: `6. server peak RSS, ${CLIENTS} clients listing a 1,000,000-file job vs a 10,000-file job`,
        ckpt: big.peak,
        anchor: small.peak,
        unit: "MiB",
        target: "bounded, <= 1.25x",
        meets: (r) => r <= 1.25,
        note: `${seconds} s of random page_size=1000 pages (${fmt(big.pagesPerSec)} vs ${fmt(small.pagesPerSec)} pages/s); idle RSS ${fmt(big.idle)} vs ${fmt(small.idle)} MiB`,
      }),
    );
  } finally {
    await smallDir.remove();
  }

  const size = opts.quick ? 512 * MiB : 4 * GiB;
  const big = await clientPeak(size);
  const small = await clientPeak(size / 8);
  const label = (n: number) => (n >= GiB ? `${n / GiB} GiB` : `${n / MiB} MiB`);
  rows.push(
    row({
      scenario: `6. client peak RSS, ckpt download of one ${label(size)} file vs one ${label(size / 8)} file`,
      ckpt: big.peak,
      anchor: small.peak,
      unit: "MiB",
      target: "bounded, <= 1.25x",
      meets: (r) => r <= 1.25,
      note: `${opts.quick ? "quick mode: 512 MiB instead of 4 GiB; " : ""}download took ${fmt(big.seconds)} s vs ${fmt(small.seconds)} s (${fmt(size / MiB / big.seconds)} MiB/s for the large file, fsync included)`,
    }),
  );
  return rows;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const { runStandalone } = await import("./run.js");
  await runStandalone([runMemoryBench]);
}
