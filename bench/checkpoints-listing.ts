/**
 * Scenario 1b, checkpoint listing cost: does `GET …/jobs/{j}/checkpoints` (states, sizes, file
 * counts) of a 1,000,000-file job cost what it costs for a 1,000-file job? Both jobs have ten
 * checkpoints, so the answers are the same size; only the number of files behind them differs.
 * The state and aggregates are kept per checkpoint at commit time, so neither scans files.
 *
 * Through the real HTTP server, on SQLite and on PostgreSQL, one server holding both jobs,
 * requests alternating on one keep-alive connection. Anchor: the 1,000-file job. Target <= 1.5x.
 */
import { pathToFileURL } from "node:url";
import { Client } from "undici";
import { startPostgres } from "../test/harness/postgres.js";
import { onCleanup, startServer, tempDir } from "./lib.js";
import { JOB_FILES } from "./listing-depth.js";
import { fmt, median, percentile, row, type Row } from "./report.js";
import { seedPostgres, seedSqlite, syntheticFile, type SeededJob } from "./seed.js";

const SMALL_FILES = 1000;
const CHECKPOINTS = 10;

async function timeListing(client: Client, job: SeededJob): Promise<number> {
  const path = `/v1/training_projects/${job.projectId}/jobs/${job.jobId}/checkpoints`;
  const started = performance.now();
  const res = await client.request({ method: "GET", path, headers: { authorization: `Api-Key ${job.apiKey}` } });
  const body = await res.body.text();
  const ms = performance.now() - started;
  if (res.statusCode !== 200) throw new Error(`GET ${path}: ${res.statusCode} ${body.slice(0, 200)}`);
  const entries = body.split('"checkpoint_id"').length - 1;
  if (entries !== CHECKPOINTS) throw new Error(`GET ${path}: ${entries} checkpoints, expected ${CHECKPOINTS}`);
  return ms;
}

async function timePair(baseUrl: string, big: SeededJob, small: SeededJob, pairs: number): Promise<{ big: number[]; small: number[] }> {
  const client = new Client(baseUrl, { pipelining: 1 });
  try {
    for (let i = 0; i < 20; i++) await Promise.all([timeListing(client, big), timeListing(client, small)]);
    const times = { big: [] as number[], small: [] as number[] };
    for (let i = 0; i < pairs; i++) {
      if (i % 2 === 0) {
        times.big.push(await timeListing(client, big));
        times.small.push(await timeListing(client, small));
      } else {
        times.small.push(await timeListing(client, small));
        times.big.push(await timeListing(client, big));
      }
    }
    return times;
  } finally {
    await client.close();
  }
}

function listingRow(backend: string, times: { big: number[]; small: number[] }, bigFiles: number): Row {
  const n = (x: number) => x.toLocaleString("en-US");
  return row({
    scenario: `1b. /checkpoints, ${backend}: ${n(bigFiles)}-file job vs ${n(SMALL_FILES)}-file job (median)`,
    ckpt: median(times.big),
    anchor: median(times.small),
    unit: "ms/request",
    target: "<= 1.5x",
    meets: (r) => r <= 1.5,
    note: `p90 ${fmt(percentile(times.big, 90))} vs ${fmt(percentile(times.small, 90))} ms; ${times.big.length} alternating pairs; ${CHECKPOINTS} checkpoints each${bigFiles < JOB_FILES ? " (--quick; the full run uses 1,000,000)" : ""}`,
  });
}

export async function runCheckpointsListingBench(opts: { quick: boolean }): Promise<Row[]> {
  const pairs = opts.quick ? 40 : 300;
  const bigFiles = opts.quick ? 200_000 : JOB_FILES;
  const rows: Row[] = [];

  const dir = tempDir("ckpts-listing");
  try {
    const big = await seedSqlite(dir.path, bigFiles, (i) => syntheticFile(i, bigFiles / CHECKPOINTS));
    const small = await seedSqlite(dir.path, SMALL_FILES, (i) => syntheticFile(i, SMALL_FILES / CHECKPOINTS));
    const server = await startServer({ dataDir: dir.path });
    try {
      rows.push(listingRow("SQLite", await timePair(server.baseUrl, big, small, pairs), bigFiles));
    } finally {
      await server.stop();
    }
  } finally {
    await dir.remove();
  }

  const pgInstance = await startPostgres();
  if (!pgInstance) {
    rows.push(row({ scenario: "1b. /checkpoints, PostgreSQL", ckpt: Number.NaN, anchor: Number.NaN, unit: "ms/request", note: "skipped: PostgreSQL (initdb, pg_ctl) is not installed" }));
    return rows;
  }
  const stopPg = onCleanup(() => pgInstance.stop());
  try {
    const url = await pgInstance.createDatabase("bench_checkpoints");
    const big = await seedPostgres(url, bigFiles, bigFiles / CHECKPOINTS);
    const small = await seedPostgres(url, SMALL_FILES, SMALL_FILES / CHECKPOINTS);
    const pgDir = tempDir("pg-data");
    const server = await startServer({ dataDir: pgDir.path, env: { CKPT_DATABASE_URL: url } });
    try {
      rows.push(listingRow("PostgreSQL", await timePair(server.baseUrl, big, small, pairs), bigFiles));
    } finally {
      await server.stop();
      await pgDir.remove();
    }
  } finally {
    await stopPg();
  }
  return rows;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const { runStandalone } = await import("./run.js");
  await runStandalone([runCheckpointsListingBench]);
}
