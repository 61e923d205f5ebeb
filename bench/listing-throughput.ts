/**
 * Scenario 2, listing throughput: how many page_size=1000 pages of presigned URLs per second
 * the embedded default serves to many concurrent clients, and the server CPU time per 1000 URLs.
 *
 * Anchor: the same server answering the same JSON (same size) with no signing
 * (bench/listing-server.ts --no-sign), so the gap is the cost of signing. Both servers run side
 * by side on the same 1,000,000-file SQLite job; wrk (32 connections, random pages) alternates
 * between them, and each one's CPU time comes from /proc/<pid>/stat over its own rounds.
 *
 * For the S3 backend, ckpt's SigV4 presigner against @aws-sdk/s3-request-presigner
 * (bench/presign.ts; the two are first checked to produce byte-identical URLs). Target >= 20x.
 */
import { pathToFileURL } from "node:url";
import { runPresignBench } from "./presign.js";
import { BENCH_SERVER, cpuTimeMs, startServer, tempDir, wrk, type ServerHandle } from "./lib.js";
import { fmt, median, row, type Row } from "./report.js";
import { sharedSqliteJob, type SeededJob } from "./seed.js";
import { JOB_FILES } from "./listing-depth.js";

const CONNECTIONS = 32;

interface Round {
  pagesPerSec: number;
  cpuMsPerPage: number;
  p50Ms: number;
}

function pagesScript(job: SeededJob): string {
  const base = `/v1/training_projects/${job.projectId}/jobs/${job.jobId}/checkpoint_files?page_size=1000&page_token=`;
  const pages = Math.floor(job.fileCount / 1000);
  return [
    `local base = ${JSON.stringify(base)}`,
    `request = function() return wrk.format("GET", base .. (math.random(0, ${pages - 1}) * 1000)) end`,
  ].join("\n");
}

async function round(server: ServerHandle, job: SeededJob, seconds: number, dir: string): Promise<Round> {
  const cpu0 = cpuTimeMs(server.pid);
  const r = await wrk({
    url: server.baseUrl,
    seconds,
    connections: CONNECTIONS,
    headers: { Authorization: `Api-Key ${job.apiKey}` },
    lua: pagesScript(job),
    dir,
  });
  const cpu = cpuTimeMs(server.pid) - cpu0;
  return { pagesPerSec: r.requestsPerSec, cpuMsPerPage: cpu / r.requests, p50Ms: r.latencyP50Ms };
}

export async function runListingThroughputBench(opts: { quick: boolean }): Promise<Row[]> {
  const rounds = opts.quick ? 2 : 4;
  const seconds = opts.quick ? 3 : 10;
  const job = await sharedSqliteJob(JOB_FILES);
  const scratch = tempDir("wrk");
  const signing = await startServer({ dataDir: job.dataDir, script: BENCH_SERVER });
  const unsigned = await startServer({ dataDir: job.dataDir, script: BENCH_SERVER, scriptArgs: ["--no-sign"] });
  const rows: Row[] = [];
  try {
    // Warm-up: JIT, SQLite page cache, connection set-up.
    await round(signing, job, opts.quick ? 1 : 2, scratch.path);
    await round(unsigned, job, opts.quick ? 1 : 2, scratch.path);
    const ours: Round[] = [];
    const anchor: Round[] = [];
    for (let r = 0; r < rounds; r++) {
      if (r % 2 === 0) {
        ours.push(await round(signing, job, seconds, scratch.path));
        anchor.push(await round(unsigned, job, seconds, scratch.path));
      } else {
        anchor.push(await round(unsigned, job, seconds, scratch.path));
        ours.push(await round(signing, job, seconds, scratch.path));
      }
    }
    const pagesOurs = median(ours.map((r) => r.pagesPerSec));
    const pagesAnchor = median(anchor.map((r) => r.pagesPerSec));
    const cpuOurs = median(ours.map((r) => r.cpuMsPerPage));
    const cpuAnchor = median(anchor.map((r) => r.cpuMsPerPage));
    rows.push(
      row({
        scenario: `2. listing throughput, embedded: pages of 1000 URLs/s, ${CONNECTIONS} clients vs same server without signing`,
        ckpt: pagesOurs,
        anchor: pagesAnchor,
        unit: "pages/s",
        note: `${rounds} alternating ${seconds} s wrk rounds each, random pages of the 1,000,000-file job, median; = ${fmt(pagesOurs * 1000)} URLs/s; p50 latency ${fmt(median(ours.map((r) => r.p50Ms)))} vs ${fmt(median(anchor.map((r) => r.p50Ms)))} ms`,
      }),
      row({
        scenario: "2. listing, server CPU time per 1000 URLs vs without signing",
        ckpt: cpuOurs,
        anchor: cpuAnchor,
        unit: "CPU ms/1000 URLs",
        note: `signing costs ${fmt(cpuOurs - cpuAnchor)} ms of the ${fmt(cpuOurs)} ms per 1000 URLs (${fmt((cpuOurs - cpuAnchor) * 1000)} ns/URL); the rest is auth, SQLite, JSON`,
      }),
    );
  } finally {
    await signing.stop();
    await unsigned.stop();
    await scratch.remove();
  }

  const presign = await runPresignBench(opts);
  rows.push(
    row({
      scenario: "2. S3 presigning: ckpt SigV4 presigner vs @aws-sdk/s3-request-presigner",
      ckpt: presign.ckptPerSec,
      anchor: presign.sdkPerSec,
      unit: "URLs/s",
      target: ">= 20x",
      meets: (r) => r >= 20,
      note: `byte-identical URLs checked for 50 keys before timing; ${opts.quick ? "3 rounds of 1,000" : "5 rounds of 10,000"} keys, median (bench/presign.ts)`,
    }),
  );
  return rows;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const { runStandalone } = await import("./run.js");
  await runStandalone([runListingThroughputBench]);
}
