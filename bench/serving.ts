/**
 * Scenario 3, serving: presigned GETs from ckpt's blob route against nginx (the Debian package)
 * serving the very same files from the same disk, both on loopback, measured by the same clients:
 *
 *   - one large file (2 GiB; 1 GiB with --quick): curl to /dev/null, curl's speed_download;
 *   - 1,000 small files (4-64 KiB): wrk, 32 connections, cycling through the files.
 *
 * Rounds rotate between the sides so drift in machine load hits all alike; figures are medians.
 * A third side, the Node.js floor (bench/static-floor.ts: node:http + createReadStream, nothing
 * else), separates what ckpt's route costs from what serving files from one Node.js process costs.
 * A fourth is the production deployment of README "Serving downloads through nginx": a second
 * `ckpt serve --accel-redirect` on the same data directory behind its own nginx, which proxies
 * each GET to ckpt (signature, metadata, open + fstat, If-Match) and sends the file itself.
 * Server CPU time per GET / per GiB comes from /proc (nginx: master and workers; the fourth side:
 * its nginx and its ckpt together).
 *
 * ckpt is `ckpt serve --log-level warn` GETting the URLs its own listing handed out (signature
 * check, metadata lookup, open + fstat, one read or a stream). nginx: worker_processes auto,
 * sendfile on, access_log off, its root the ckpt data dir (so /blobs/<key> is the same file; it
 * ignores the query). Target: >= 0.8x nginx.
 *
 * Figures: BENCHMARKS.md, scenario 3.
 *
 * BENCH_CPU_PROF=<dir> makes the ckpt server write a V8 CPU profile there (node --cpu-prof).
 */
import { existsSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { spawn } from "node:child_process";
import { cpuTimeMs, curlDownloadSpeed, freePort, GiB, luaStrings, MiB, onCleanup, sleep, startServer, STATIC_FLOOR, tempDir, treeCpuTimeMs, wrk } from "./lib.js";
import { fmt, median, row, type Row } from "./report.js";
import { seedSqlite, writeBlob, type SeedFile, type SeededJob } from "./seed.js";

const SMALL_FILES = 1000;
const CONNECTIONS = 32;

function smallFile(i: number): SeedFile {
  // 4 KiB to 64 KiB, spread deterministically: configs, tokenizer files, optimizer shards' indexes.
  return { nodeRank: 0, relativeName: `checkpoint-000100/small/file-${String(i).padStart(4, "0")}.json`, sizeBytes: 4096 + ((i * 7919) % 61441) };
}

/** Every presigned URL of a job, through the real listing. */
export async function presignedUrls(baseUrl: string, job: SeededJob): Promise<Map<string, string>> {
  const urls = new Map<string, string>();
  for (let token: number | null = 0; token !== null; ) {
    const res = await fetch(`${baseUrl}/v1/training_projects/${job.projectId}/jobs/${job.jobId}/checkpoint_files?page_size=1000&page_token=${token}`, {
      headers: { authorization: `Api-Key ${job.apiKey}` },
    });
    if (!res.ok) throw new Error(`listing: ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { presigned_urls: { url: string; relative_file_name: string }[]; next_page_token: number | null };
    for (const f of page.presigned_urls) urls.set(f.relative_file_name, f.url);
    token = page.next_page_token;
  }
  return urls;
}

export interface Nginx {
  baseUrl: string;
  /** The master's pid; its workers are its children. */
  pid: number;
  stop(): Promise<void>;
}

/** The internal location the X-Accel-Redirect side's ckpt names (its --accel-redirect). */
export const ACCEL_PREFIX = "/_ckpt_blobs";

/**
 * nginx as a child process (daemon off); null when not installed. By default it serves
 * `<dataDir>/blobs/` at /blobs/ itself; with `ckptUpstream` it is the README's X-Accel-Redirect
 * deployment: everything proxied to that ckpt, which answers downloads with a redirect to an
 * internal location aliased to the same directory.
 */
export async function startNginx(dataDir: string, options: { ckptUpstream?: string; serverConfig?: string } = {}): Promise<Nginx | null> {
  const bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => existsSync(p));
  if (!bin) return null;
  const dir = tempDir("nginx");
  const port = await freePort();
  const conf = join(dir.path, "nginx.conf");
  writeFileSync(
    conf,
    `daemon off;
worker_processes auto;
${process.getuid?.() === 0 ? "user root;" : ""}
pid ${dir.path}/nginx.pid;
error_log ${dir.path}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path ${dir.path}/body;
  proxy_temp_path ${dir.path}/proxy;
  fastcgi_temp_path ${dir.path}/fastcgi;
  uwsgi_temp_path ${dir.path}/uwsgi;
  scgi_temp_path ${dir.path}/scgi;
  ${options.ckptUpstream === undefined ? "" : `upstream ckpt { server ${new URL(options.ckptUpstream).host}; keepalive 64; }`}
  server {
    listen 127.0.0.1:${port};
    ${options.serverConfig ?? ""}
    ${options.ckptUpstream === undefined ? `location /blobs/ { root ${dataDir}; }` : accelLocations(dataDir)}
  }
}
`,
  );
  const child = spawn(bin, ["-p", dir.path, "-c", conf, "-e", join(dir.path, "error.log")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const stop = onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await Promise.race([gone, sleep(5000).then(() => child.kill("SIGKILL"))]);
    }
    await dir.remove();
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`nginx exited: ${stderr}`);
    }
    if (await fetch(`${baseUrl}/`).then(() => true, () => false)) break;
    if (i > 200) {
      await stop();
      throw new Error(`nginx did not come up: ${stderr}`);
    }
    await sleep(25);
  }
  return { baseUrl, pid: child.pid!, stop };
}

/** The README's locations for `--accel-redirect` (the add_header lines of the internal one included). */
function accelLocations(dataDir: string): string {
  return `location / {
      proxy_pass http://ckpt;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
    }
    location ${ACCEL_PREFIX}/ {
      internal;
      alias ${dataDir}/blobs/;
      add_header X-Ckpt-Sha256 $upstream_http_x_ckpt_sha256 always;
      add_header X-Content-Type-Options nosniff always;
      add_header Content-Security-Policy "default-src 'none'; frame-ancestors 'none'" always;
      add_header X-Frame-Options DENY always;
      add_header Referrer-Policy no-referrer always;
      add_header Cross-Origin-Resource-Policy same-origin always;
    }`;
}

/** The same URL on another server: nginx ignores the signature in the query. */
function rebase(url: string, baseUrl: string): string {
  const u = new URL(url);
  return baseUrl + u.pathname + u.search;
}

function cycleScript(paths: string[]): string {
  return [
    `local paths = ${luaStrings(paths)}`,
    "local i = 0",
    "request = function()",
    "  i = i % #paths + 1",
    '  return wrk.format("GET", paths[i])',
    "end",
  ].join("\n");
}

interface Side {
  name: "ckpt" | "nginx" | "node floor" | "ckpt behind nginx" | "ckpt, N workers";
  baseUrl: string;
  /** CPU time of the whole server (nginx: master and workers) so far, in ms. */
  cpuMs(): number;
}

/** Rounds of `measure` over the sides, in an order that rotates every round; per side, the figures of each round. */
async function alternate<T>(sides: Side[], rounds: number, measure: (side: Side) => Promise<T>): Promise<Map<Side, T[]>> {
  const out = new Map<Side, T[]>(sides.map((s) => [s, []]));
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < sides.length; i++) {
      const side = sides[(i + r) % sides.length]!;
      out.get(side)!.push(await measure(side));
    }
  }
  return out;
}

export async function runServingBench(opts: { quick: boolean }): Promise<Row[]> {
  const bigSize = opts.quick ? 1 * GiB : 2 * GiB;
  const bigRounds = opts.quick ? 3 : 5;
  const smallRounds = opts.quick ? 2 : 4;
  const smallSeconds = opts.quick ? 3 : 8;
  const big: SeedFile = { nodeRank: 0, relativeName: "checkpoint-000100/model.safetensors", sizeBytes: bigSize };
  const fileAt = (i: number) => (i === 0 ? big : smallFile(i - 1));

  const data = tempDir("serving");
  const rows: Row[] = [];
  try {
    const job = await seedSqlite(data.path, SMALL_FILES + 1, fileAt);
    for (let i = 0; i <= SMALL_FILES; i++) writeBlob(data.path, job, fileAt(i));
    const nginx = await startNginx(data.path);
    if (!nginx) return [row({ scenario: "3. serving", ckpt: Number.NaN, anchor: Number.NaN, unit: "", note: "skipped: nginx is not installed" })];
    const prof = process.env.BENCH_CPU_PROF;
    // One process, as before --workers existed, and one worker per core (`ckpt serve`'s default).
    const ckpt = await startServer({ dataDir: data.path, env: { CKPT_WORKERS: "1" }, nodeArgs: prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : [] });
    const workers = availableParallelism();
    const clustered = await startServer({ dataDir: data.path, env: { CKPT_WORKERS: String(workers) } });
    const floor = await startServer({ dataDir: data.path, script: STATIC_FLOOR });
    // A second ckpt on the same data directory (same database, same URL-signing keyring), in
    // the X-Accel-Redirect deployment behind its own nginx.
    const accelCkpt = await startServer({ dataDir: data.path, env: { CKPT_ACCEL_REDIRECT: ACCEL_PREFIX, CKPT_WORKERS: "1" } });
    const accelNginx = (await startNginx(data.path, { ckptUpstream: accelCkpt.baseUrl }))!;
    try {
      const ours: Side = { name: "ckpt", baseUrl: ckpt.baseUrl, cpuMs: () => cpuTimeMs(ckpt.pid) };
      const theirs: Side = { name: "nginx", baseUrl: nginx.baseUrl, cpuMs: () => treeCpuTimeMs(nginx.pid) };
      const bare: Side = { name: "node floor", baseUrl: floor.baseUrl, cpuMs: () => cpuTimeMs(floor.pid) };
      const accel: Side = {
        name: "ckpt behind nginx",
        baseUrl: accelNginx.baseUrl,
        cpuMs: () => treeCpuTimeMs(accelNginx.pid) + cpuTimeMs(accelCkpt.pid),
      };
      const many: Side = { name: "ckpt, N workers", baseUrl: clustered.baseUrl, cpuMs: () => treeCpuTimeMs(clustered.pid) };
      const sides = [ours, theirs, bare, accel, many];
      const urls = await presignedUrls(ckpt.baseUrl, job);
      // Every side gets ckpt's presigned URL (nginx and the floor ignore the query string).
      const urlOn = (side: Side, url: string) => rebase(url, side.baseUrl);

      // One large file; the first GET on each side warms the page cache and the server.
      const bigUrl = urls.get(big.relativeName)!;
      for (const side of sides) await curlDownloadSpeed(urlOn(side, bigUrl));
      const bigRuns = await alternate(sides, bigRounds, async (side) => {
        const cpu0 = side.cpuMs();
        const speed = await curlDownloadSpeed(urlOn(side, bigUrl));
        return { mibps: speed / MiB, cpuMsPerGiB: (side.cpuMs() - cpu0) / (bigSize / GiB) };
      });
      const bigMed = (side: Side, k: "mibps" | "cpuMsPerGiB") => median(bigRuns.get(side)!.map((x) => x[k]));
      rows.push(
        row({
          scenario: `3. serving one ${bigSize / GiB} GiB file: ckpt blob route vs nginx (curl)`,
          ckpt: bigMed(ours, "mibps"),
          anchor: bigMed(theirs, "mibps"),
          unit: "MiB/s",
          target: ">= 0.8x",
          meets: (r) => r >= 0.8,
          note:
            `${bigRounds} rotating curl GETs each to /dev/null, median; page cache warm; ` +
            `server CPU per GiB ${fmt(bigMed(ours, "cpuMsPerGiB"))} ms (ckpt) vs ${fmt(bigMed(theirs, "cpuMsPerGiB"))} ms (nginx, sendfile); ` +
            `Node.js floor (bench/static-floor.ts) ${fmt(bigMed(bare, "mibps"))} MiB/s, ${fmt(bigMed(bare, "cpuMsPerGiB"))} CPU ms/GiB`,
        }),
      );

      rows.push(
        row({
          scenario: `3. serving one ${bigSize / GiB} GiB file: ckpt behind nginx (X-Accel-Redirect) vs nginx (curl)`,
          ckpt: bigMed(accel, "mibps"),
          anchor: bigMed(theirs, "mibps"),
          unit: "MiB/s",
          target: ">= 0.8x",
          meets: (r) => r >= 0.8,
          note: `same rounds; ckpt --accel-redirect verifies the URL, nginx sends the file; server CPU per GiB ${fmt(bigMed(accel, "cpuMsPerGiB"))} ms (nginx + ckpt)`,
        }),
      );

      rows.push(
        row({
          scenario: `3. serving one ${bigSize / GiB} GiB file: ckpt --workers ${workers} vs nginx (curl)`,
          ckpt: bigMed(many, "mibps"),
          anchor: bigMed(theirs, "mibps"),
          unit: "MiB/s",
          target: ">= 0.8x",
          meets: (r) => r >= 0.8,
          note: `same rounds; one download is served by one worker, so more workers cannot speed it up; ckpt with 1 process ${fmt(bigMed(ours, "mibps"))} MiB/s`,
        }),
      );

      // 1,000 small files, wrk cycling through them.
      const script = cycleScript(
        Array.from({ length: SMALL_FILES }, (_, i) => {
          const u = new URL(urls.get(smallFile(i).relativeName)!);
          return u.pathname + u.search;
        }),
      );
      const smallRound = async (side: Side, seconds: number) => {
        const cpu0 = side.cpuMs();
        const got = await wrk({ url: side.baseUrl, seconds, connections: CONNECTIONS, lua: script, dir: data.path });
        return { rps: got.requestsPerSec, mibps: got.bytesPerSec / MiB, cpuMsPerGet: (side.cpuMs() - cpu0) / got.requests };
      };
      for (const side of sides) await smallRound(side, opts.quick ? 1 : 2);
      const smallRuns = await alternate(sides, smallRounds, (side) => smallRound(side, smallSeconds));
      const smallMed = (side: Side, k: "rps" | "mibps" | "cpuMsPerGet") => median(smallRuns.get(side)!.map((x) => x[k]));
      rows.push(
        row({
          scenario: `3. serving ${SMALL_FILES.toLocaleString("en-US")} small files (4-64 KiB): ckpt vs nginx (wrk, ${CONNECTIONS} conns)`,
          ckpt: smallMed(ours, "rps"),
          anchor: smallMed(theirs, "rps"),
          unit: "GETs/s",
          target: ">= 0.8x",
          meets: (r) => r >= 0.8,
          note:
            `${smallRounds} rotating ${smallSeconds} s wrk rounds each, median; ${fmt(smallMed(ours, "mibps"))} vs ${fmt(smallMed(theirs, "mibps"))} MiB/s; ` +
            "ckpt is one Node.js process, nginx one worker per core (worker_processes auto); wrk shares the cores",
        }),
        row({
          scenario: "3. serving small files: server CPU time per GET, ckpt vs nginx (all workers)",
          ckpt: smallMed(ours, "cpuMsPerGet") * 1000,
          anchor: smallMed(theirs, "cpuMsPerGet") * 1000,
          unit: "CPU us/GET",
          note: "lower is better; per-core cost, independent of how many processes each side runs",
        }),
        row({
          scenario: `3. serving ${SMALL_FILES.toLocaleString("en-US")} small files: ckpt behind nginx (X-Accel-Redirect) vs nginx (wrk, ${CONNECTIONS} conns)`,
          ckpt: smallMed(accel, "rps"),
          anchor: smallMed(theirs, "rps"),
          unit: "GETs/s",
          target: ">= 0.8x",
          meets: (r) => r >= 0.8,
          note:
            `same rounds; every GET is verified by ckpt (signature, metadata, open) and sent by nginx; ` +
            `server CPU ${fmt(smallMed(accel, "cpuMsPerGet") * 1000)} us/GET (nginx + ckpt) vs ${fmt(smallMed(theirs, "cpuMsPerGet") * 1000)} (nginx alone)`,
        }),
        row({
          scenario: `3. serving ${SMALL_FILES.toLocaleString("en-US")} small files: ckpt --workers ${workers} vs nginx (wrk, ${CONNECTIONS} conns)`,
          ckpt: smallMed(many, "rps"),
          anchor: smallMed(theirs, "rps"),
          unit: "GETs/s",
          target: ">= 0.8x",
          meets: (r) => r >= 0.8,
          note:
            `same rounds; ${workers} workers (node:cluster, one per core) vs ckpt in one process ${fmt(smallMed(ours, "rps"))} GETs/s ` +
            `(${fmt(smallMed(many, "rps") / smallMed(ours, "rps"))}x); ${fmt(smallMed(many, "cpuMsPerGet") * 1000)} CPU us/GET over all workers; wrk shares the cores`,
        }),
        row({
          scenario: "3. serving small files: Node.js floor (bare node:http + createReadStream, no auth, no DB) vs nginx",
          ckpt: smallMed(bare, "rps"),
          anchor: smallMed(theirs, "rps"),
          unit: "GETs/s",
          note: `the ceiling for any single Node.js process here (bench/static-floor.ts); ${fmt(smallMed(bare, "cpuMsPerGet") * 1000)} CPU us/GET; ckpt reaches ${fmt((smallMed(ours, "rps") / smallMed(bare, "rps")) * 100)}% of it`,
        }),
      );
    } finally {
      await ckpt.stop();
      await clustered.stop();
      await floor.stop();
      await accelNginx.stop();
      await accelCkpt.stop();
      await nginx.stop();
    }
  } finally {
    await data.remove();
  }
  return rows;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const { runStandalone } = await import("./run.js");
  await runStandalone([runServingBench]);
}
