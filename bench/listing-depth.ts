/**
 * Scenario 1, listing depth: in a job of 1,000,000 files, does the page at offset 999,000 cost
 * what the first page costs? (Positions are dense, so a page is one index seek at any offset.)
 *
 * Through the real HTTP server (`ckpt serve` as a child process), on SQLite and on PostgreSQL.
 * First-page and deep-page requests alternate on one keep-alive connection, so load drift hits
 * both alike; we report the median and p90 of each. Anchor: the first page. Target: deep/first <= 1.5.
 */
import { pathToFileURL } from "node:url";
import { Client } from "undici";
import { startPostgres } from "../test/harness/postgres.js";
import { onCleanup, startServer, tempDir } from "./lib.js";
import { fmt, median, percentile, row, type Row } from "./report.js";
import { seedPostgres, sharedSqliteJob, type SeededJob } from "./seed.js";

export const JOB_FILES = 1_000_000;
const PAGE_SIZE = 1000;

interface PageTimes {
  first: number[];
  deep: number[];
}

/** Times one page request, from sending to the last byte of the body, in ms. */
async function timePage(client: Client, path: string, apiKey: string, expectEntries: number): Promise<number> {
  const started = performance.now();
  const res = await client.request({ method: "GET", path, headers: { authorization: `Api-Key ${apiKey}` } });
  const body = await res.body.text();
  const ms = performance.now() - started;
  if (res.statusCode !== 200) throw new Error(`GET ${path}: ${res.statusCode} ${body.slice(0, 200)}`);
  // Cheap check that the page is the page we meant (full, not an error or an empty tail).
  const entries = body.split('"relative_file_name"').length - 1;
  if (entries !== expectEntries) throw new Error(`GET ${path}: ${entries} entries, expected ${expectEntries}`);
  return ms;
}

/** Alternates first-page and deep-page requests against a server; `pairs` of each after warm-up. */
export async function timeDepth(baseUrl: string, job: SeededJob, pairs: number): Promise<PageTimes> {
  const client = new Client(baseUrl, { pipelining: 1 });
  try {
    const base = `/v1/training_projects/${job.projectId}/jobs/${job.jobId}/checkpoint_files?page_size=${PAGE_SIZE}`;
    const deepOffset = job.fileCount - PAGE_SIZE;
    const first = `${base}&page_token=0`;
    const deep = `${base}&page_token=${deepOffset}`;
    for (let i = 0; i < 20; i++) {
      await timePage(client, first, job.apiKey, PAGE_SIZE);
      await timePage(client, deep, job.apiKey, PAGE_SIZE);
    }
    const times: PageTimes = { first: [], deep: [] };
    for (let i = 0; i < pairs; i++) {
      // Swap the order every other pair: neither side always follows the other.
      if (i % 2 === 0) {
        times.first.push(await timePage(client, first, job.apiKey, PAGE_SIZE));
        times.deep.push(await timePage(client, deep, job.apiKey, PAGE_SIZE));
      } else {
        times.deep.push(await timePage(client, deep, job.apiKey, PAGE_SIZE));
        times.first.push(await timePage(client, first, job.apiKey, PAGE_SIZE));
      }
    }
    return times;
  } finally {
    await client.close();
  }
}

function depthRow(backend: string, times: PageTimes, files: number): Row {
  const n = (x: number) => x.toLocaleString("en-US");
  const deep = median(times.deep);
  const first = median(times.first);
  return row({
    scenario: `1. listing depth, ${backend}: page at ${n(files - PAGE_SIZE)} vs first page (median)`,
    ckpt: deep,
    anchor: first,
    unit: "ms/page",
    target: "<= 1.5x",
    meets: (r) => r <= 1.5,
    note: `p90 ${fmt(percentile(times.deep, 90))} vs ${fmt(percentile(times.first, 90))} ms; ${times.deep.length} alternating pairs, page_size 1000, ${n(files)}-file job${files < JOB_FILES ? " (--quick; the full run uses 1,000,000)" : ""}`,
  });
}

export async function runListingDepthBench(opts: { quick: boolean }): Promise<Row[]> {
  const pairs = opts.quick ? 40 : 300;
  // --quick seeds PostgreSQL with fewer rows (seeding 1,000,000 takes 10-20 s there).
  const pgFiles = opts.quick ? 200_000 : JOB_FILES;
  const rows: Row[] = [];

  const sqliteJob = await sharedSqliteJob(JOB_FILES);
  const sqliteServer = await startServer({ dataDir: sqliteJob.dataDir });
  try {
    rows.push(depthRow("SQLite", await timeDepth(sqliteServer.baseUrl, sqliteJob, pairs), JOB_FILES));
  } finally {
    await sqliteServer.stop();
  }

  const pgInstance = await startPostgres();
  if (!pgInstance) {
    rows.push(row({ scenario: "1. listing depth, PostgreSQL", ckpt: Number.NaN, anchor: Number.NaN, unit: "ms/page", note: "skipped: PostgreSQL (initdb, pg_ctl) is not installed" }));
    return rows;
  }
  const stopPg = onCleanup(() => pgInstance.stop());
  try {
    const url = await pgInstance.createDatabase("bench");
    const pgJob = await seedPostgres(url, pgFiles);
    const dir = tempDir("pg-data");
    const server = await startServer({ dataDir: dir.path, env: { CKPT_DATABASE_URL: url } });
    try {
      rows.push(depthRow("PostgreSQL", await timeDepth(server.baseUrl, pgJob, pairs), pgFiles));
    } finally {
      await server.stop();
      await dir.remove();
    }
  } finally {
    await stopPg();
  }
  return rows;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const { runStandalone } = await import("./run.js");
  await runStandalone([runListingDepthBench]);
}
