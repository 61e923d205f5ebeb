/**
 * Download throughput: `ckpt download` against aria2c and sequential curl, fetching the same
 * checkpoint from the same ckpt server in the same run.
 *
 *   node dist/bench/download.js [--quick] [--out-dir DIR] [--sweep]
 *
 * The server (`ckpt serve`, a child process) holds a job shaped like a real checkpoint: a few
 * large safetensors shards, one per node rank, and hundreds of small files (configs, tokenizer
 * parts, optimizer metadata). Each round runs the three clients one after another, in an order
 * that rotates from round to round so drift in machine load hits all alike; each figure is the
 * median over rounds of bytes / wall time from process start to exit.
 *
 *   ckpt     `ckpt download --json` as a child process: lists the job itself, then downloads
 *   aria2c   `aria2c -x16 -s16 -j16 -i urls.txt`, given the URL list ready-made
 *   curl     one `curl` process fetching the URLs one after another (connection reused)
 *
 * ckpt fsyncs each file before renaming it into place; the others do not. With --out-dir on a
 * tmpfs (/dev/shm) that costs nothing, on a disk it is ckpt's price for durable files.
 *
 * Peak client RSS is sampled from /proc (VmRSS and VmHWM). "Bounded regardless of file size"
 * is checked by downloading one file of the large size and one an eighth of it with the same
 * number of requests in flight: ckpt's peak should not follow the file size. (What it does
 * follow is the requests in flight, about 2 MiB each, bounded by --concurrency and
 * --parts-per-file.)
 *
 * Full runs add a slow-link scenario: the same server behind a proxy that holds each
 * connection to 8 MiB/s after 10 ms, as S3 or a long path does to a single stream. There the
 * number of connections decides, not CPU; curl (one connection) is left out as it would take
 * minutes.
 *
 * --sweep instead times ckpt alone over a grid of part sizes, parts per file and files in
 * flight: how DEFAULT_TUNING in src/client/download/types.ts was chosen.
 *
 * Full: 4 x 512 MiB + 500 small files (about 2.1 GiB), 3 rounds. Quick: 4 x 64 MiB + 200 small
 * files, 2 rounds (about 30 s).
 *
 * Figures: BENCHMARKS.md, scenario 2.
 */
import { mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomFillSync } from "node:crypto";
import { Agent as HttpAgent, createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { open } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { CkptClient } from "../src/client/api.js";
import type { CheckpointFile } from "../src/client/types.js";
import { uploadCheckpointFile } from "../src/client/upload/streamed-upload.js";
import { runPool } from "../src/client/download/pool.js";
import { CKPT_CLI, cpuTimeMs, MiB, onCleanup, run, RssSampler, runCleanups, startServer, tempDir, type ServerHandle } from "./lib.js";
import { fmt as fmtCpu, formatTable, median, row, type Row } from "./report.js";

interface Fixture {
  /** One large shard per rank. */
  largeFiles: number;
  largeSize: number;
  smallFiles: number;
  rounds: number;
}

const FULL: Fixture = { largeFiles: 4, largeSize: 512 * MiB, smallFiles: 500, rounds: 3 };
const QUICK: Fixture = { largeFiles: 4, largeSize: 64 * MiB, smallFiles: 200, rounds: 2 };

/** Small files from 1 KiB to 256 KiB, spread evenly (about 128 KiB on average). */
function smallFileSize(i: number): number {
  return 1024 * (1 + ((i * 37) % 256));
}

interface Job {
  projectId: string;
  jobId: string;
  files: CheckpointFile[];
  bytes: number;
}

interface Bench {
  server: ServerHandle;
  apiKey: string;
  client: CkptClient;
  work: string;
  outRoot: string;
}

type Tool = "ckpt" | "aria2c" | "curl";

interface Measurement {
  /** Wall time from process start to exit. */
  seconds: number;
  /** For ckpt: the engine's own time from its summary (without the CLI's start-up). */
  engineSeconds?: number;
  peakRssMiB: number;
  /** CPU time (user + system) of the client, sampled until it exits, and of the server over the run. */
  clientCpuSeconds: number;
  serverCpuSeconds: number;
}

export async function runDownloadBench(opts: { quick: boolean; outDir?: string }): Promise<Row[]> {
  const rows = await runLoopbackScenario(opts);
  if (!opts.quick) rows.push(...(await runSlowLinkScenario(opts)));
  return rows;
}

async function runLoopbackScenario(opts: { quick: boolean; outDir?: string }): Promise<Row[]> {
  const fixture = opts.quick ? QUICK : FULL;
  const bench = await startBench(opts.outDir);
  try {
    const main = await seedJob(bench, "checkpoint", mainJobFiles(fixture));
    const oneLarge = await seedJob(bench, "one-large", [{ rank: 0, name: "model.safetensors", size: fixture.largeSize }]);
    const oneEighth = await seedJob(bench, "one-eighth", [{ rank: 0, name: "model.safetensors", size: fixture.largeSize / 8 }]);

    const tools: Tool[] = ["ckpt", "aria2c", "curl"];
    const results: Record<Tool, Measurement[]> = { ckpt: [], aria2c: [], curl: [] };
    const rss = { large: [] as number[], eighth: [] as number[] };
    for (let round = 0; round < fixture.rounds; round++) {
      for (let i = 0; i < tools.length; i++) {
        const tool = tools[(i + round) % tools.length]!;
        results[tool].push(await download(bench, main, tool));
      }
      // Same parallelism for both (4 requests in flight, at least 4 parts each), so only the
      // file size differs.
      const sameParallelism = ["--parts-per-file", "4", "--part-size", `${fixture.largeSize / 32 / MiB}MiB`];
      rss.large.push((await download(bench, oneLarge, "ckpt", sameParallelism)).peakRssMiB);
      rss.eighth.push((await download(bench, oneEighth, "ckpt", sameParallelism)).peakRssMiB);
    }

    const rate = (tool: Tool) => median(results[tool].map((m) => main.bytes / MiB / m.seconds));
    const peak = (tool: Tool) => Math.max(...results[tool].map((m) => m.peakRssMiB));
    const cpuPerGiB = (tool: Tool) => median(results[tool].map((m) => m.clientCpuSeconds)) / (main.bytes / 2 ** 30);
    const shape = `${fixture.largeFiles} x ${fixture.largeSize / MiB} MiB + ${fixture.smallFiles} small files`;
    const where = opts.outDir ? ` into ${opts.outDir}` : "";
    return [
      row({
        scenario: `4. download ${shape}${where}: ckpt vs aria2c -x16 -s16 -j16`,
        ckpt: rate("ckpt"),
        anchor: rate("aria2c"),
        unit: "MiB/s",
        target: ">= 1.0x",
        meets: (r) => r >= 1.0,
        note: `median of ${fixture.rounds} rounds, wall time from process start (ckpt also lists the job and fsyncs every file)`,
      }),
      row({
        scenario: `4. download ${shape}${where}: ckpt engine (without CLI start-up) vs aria2c`,
        ckpt: median(results.ckpt.map((m) => main.bytes / MiB / m.engineSeconds!)),
        anchor: rate("aria2c"),
        unit: "MiB/s",
        note: "ckpt's own elapsed time from its summary: what the CLI's module loading costs is the difference to the row above",
      }),
      row({ scenario: `4. download ${shape}${where}: ckpt vs sequential curl`, ckpt: rate("ckpt"), anchor: rate("curl"), unit: "MiB/s" }),
      row({
        scenario: "4. download: client CPU per GiB, ckpt vs aria2c",
        ckpt: cpuPerGiB("ckpt"),
        anchor: cpuPerGiB("aria2c"),
        unit: "CPU s/GiB",
        note: `lower is better; ckpt includes SHA-256 of every byte (the server announces digests); the server spent ${fmtCpu(median(results.ckpt.map((m) => m.serverCpuSeconds)) / (main.bytes / 2 ** 30))} CPU s/GiB serving ckpt`,
      }),
      row({
        scenario: "4. download: client peak RSS, ckpt vs aria2c",
        ckpt: peak("ckpt"),
        anchor: peak("aria2c"),
        unit: "MiB",
        note: "lower is better; a Node.js process starts at about 50 MiB",
      }),
      row({
        scenario: `4. download: ckpt peak RSS, one ${fixture.largeSize / MiB} MiB file vs one ${fixture.largeSize / 8 / MiB} MiB file`,
        ckpt: Math.max(...rss.large),
        anchor: Math.max(...rss.eighth),
        unit: "MiB",
        target: "<= 1.25x",
        meets: (r) => r <= 1.25,
        note: "memory must not grow with file size",
      }),
    ];
  } finally {
    await bench.server.stop();
  }
}

/** ckpt vs aria2c where every connection is slow: parallel connections are what counts. */
export async function runSlowLinkScenario(opts: { outDir?: string; ckptFlags?: string[] }): Promise<Row[]> {
  const proxy = await startSlowLinkProxy(8 * MiB, 10);
  const bench = await startBench(opts.outDir, { CKPT_PUBLIC_URL: proxy.url });
  proxy.setTarget(bench.server.baseUrl);
  try {
    const fixture: Fixture = { largeFiles: 2, largeSize: 128 * MiB, smallFiles: 100, rounds: 2 };
    const job = await seedJob(bench, "slow-link", mainJobFiles(fixture));
    const results: Record<"ckpt" | "aria2c", number[]> = { ckpt: [], aria2c: [] };
    for (let round = 0; round < fixture.rounds; round++)
      for (const tool of round % 2 === 0 ? (["ckpt", "aria2c"] as const) : (["aria2c", "ckpt"] as const))
        results[tool].push(job.bytes / MiB / (await download(bench, job, tool, opts.ckptFlags)).seconds);
    return [
      row({
        scenario: "4. download over a slow link (8 MiB/s and 10 ms per connection), 2 x 128 MiB + 100 small files: ckpt vs aria2c -x16 -s16 -j16",
        ckpt: median(results.ckpt),
        anchor: median(results.aria2c),
        unit: "MiB/s",
        target: ">= 1.0x",
        meets: (r) => r >= 1.0,
        note: "sequential curl would get about 8 MiB/s here",
      }),
    ];
  } finally {
    await bench.server.stop();
    await proxy.close();
  }
}

/**
 * A proxy that makes every connection slow: each response waits `latencyMs`, then its body
 * flows at `bytesPerSecond` at most. Runs in the bench process (it is the network).
 */
async function startSlowLinkProxy(bytesPerSecond: number, latencyMs: number): Promise<{ url: string; setTarget(url: string): void; close(): Promise<void> }> {
  let target = "";
  const agent = new HttpAgent({ keepAlive: true });
  const server = createServer((req, res) => {
    const upstream = httpRequest(target + req.url, { method: req.method, headers: { ...req.headers, host: new URL(target).host }, agent });
    upstream.on("error", () => res.destroy());
    upstream.on("response", (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      const started = Date.now();
      let sent = 0;
      up.on("data", (chunk: Buffer) => {
        sent += chunk.length;
        const due = started + (sent / bytesPerSecond) * 1000;
        const wait = due - Date.now();
        res.write(chunk);
        if (wait > 0) {
          up.pause();
          setTimeout(() => up.resume(), wait);
        }
      });
      up.on("end", () => res.end());
    });
    setTimeout(() => req.pipe(upstream), latencyMs);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setTarget: (url) => (target = url),
    async close() {
      server.closeAllConnections();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Times ckpt alone over a grid of tunings (part size x parts per file x files in flight). On a
 * shared or small machine wall times are noisy, so it also reports CPU seconds per GiB of the
 * client and of the server (far steadier under load), and the peak RSS; ranked by total CPU.
 */
export async function runDownloadSweep(opts: { quick: boolean; outDir?: string }): Promise<void> {
  const fixture = opts.quick ? QUICK : FULL;
  const bench = await startBench(opts.outDir);
  try {
    const main = await seedJob(bench, "checkpoint", mainJobFiles(fixture));
    const grid: string[][] = [];
    for (const partSize of ["16MiB", "32MiB", "64MiB"])
      for (const parts of ["4", "8"]) for (const concurrency of ["8", "16"]) grid.push(["--part-size", partSize, "--parts-per-file", parts, "--concurrency", concurrency]);
    const results = new Map<string, Measurement[]>();
    for (let round = 0; round < fixture.rounds; round++)
      for (const flags of round % 2 === 0 ? grid : [...grid].reverse()) {
        const key = flags.join(" ");
        results.set(key, [...(results.get(key) ?? []), await download(bench, main, "ckpt", flags)]);
      }
    const gib = main.bytes / 1024 / MiB;
    const ranked = [...results].map(([flags, m]) => ({
      flags,
      engine: main.bytes / MiB / median(m.map((x) => x.engineSeconds!)),
      wall: main.bytes / MiB / median(m.map((x) => x.seconds)),
      client: median(m.map((x) => x.clientCpuSeconds)) / gib,
      server: median(m.map((x) => x.serverCpuSeconds)) / gib,
      rss: Math.max(...m.map((x) => x.peakRssMiB)),
    }));
    ranked.sort((a, b) => a.client + a.server - (b.client + b.server));
    console.log("engine MiB/s  wall MiB/s  client CPU s/GiB  server CPU s/GiB  peak RSS MiB  flags");
    for (const r of ranked)
      console.log(
        `${r.engine.toFixed(0).padStart(12)}  ${r.wall.toFixed(0).padStart(10)}  ${r.client.toFixed(2).padStart(16)}  ${r.server.toFixed(2).padStart(16)}  ${r.rss.toFixed(0).padStart(12)}  ${r.flags}`,
      );
  } finally {
    await bench.server.stop();
  }
}

function mainJobFiles(fixture: Fixture): { rank: number; name: string; size: number }[] {
  const files = [];
  for (let i = 0; i < fixture.largeFiles; i++)
    files.push({ rank: i, name: `checkpoint-1000/model-${String(i + 1).padStart(5, "0")}-of-${String(fixture.largeFiles).padStart(5, "0")}.safetensors`, size: fixture.largeSize });
  for (let i = 0; i < fixture.smallFiles; i++)
    files.push({ rank: i % fixture.largeFiles, name: `checkpoint-1000/extra/part-${String(i).padStart(4, "0")}.json`, size: smallFileSize(i) });
  return files;
}

async function startBench(outDir: string | undefined, env: NodeJS.ProcessEnv = {}): Promise<Bench> {
  const work = tempDir("download").path;
  const dataDir = join(work, "data");
  const { stdout } = await run(process.execPath, [CKPT_CLI, "admin", "create-key", "--org", "bench", "--data-dir", dataDir]);
  const apiKey = stdout.trim();
  const server = await startServer({ dataDir, env });
  const outRoot = outDir ? tempDirIn(outDir) : join(work, "out");
  mkdirSync(outRoot, { recursive: true });
  return { server, apiKey, client: new CkptClient({ apiUrl: server.baseUrl, apiKey }), work, outRoot };
}

/** A folder for the downloads under `parent` (e.g. /dev/shm), removed at cleanup. */
function tempDirIn(parent: string): string {
  const path = join(parent, `ckpt-bench-download-${process.pid}`);
  mkdirSync(path, { recursive: true });
  onCleanup(() => run("rm", ["-rf", path]));
  return path;
}

/** A job holding files of random bytes, uploaded through the API. */
async function seedJob(bench: Bench, name: string, files: { rank: number; name: string; size: number }[]): Promise<Job> {
  const project = await bench.client.upsertProject(`bench-${name}`);
  const job = await bench.client.createJob(project.id, {});
  const source = join(bench.work, "source");
  mkdirSync(source, { recursive: true });
  await runPool(files, 4, async (file) => {
    const path = join(source, `${file.rank}-${file.name.replaceAll("/", "_")}`);
    await writeRandomFile(path, file.size);
    await uploadCheckpointFile(bench.client, { projectId: project.id, jobId: job.id, nodeRank: file.rank, relativeName: file.name, path });
    await run("rm", ["-f", path]);
  });
  const listed: CheckpointFile[] = [];
  for await (const f of bench.client.listCheckpointFiles({ projectId: project.id, jobId: job.id })) listed.push(f);
  return { projectId: project.id, jobId: job.id, files: listed, bytes: listed.reduce((sum, f) => sum + f.size_bytes, 0) };
}

async function writeRandomFile(path: string, size: number): Promise<void> {
  const handle = await open(path, "w");
  const block = Buffer.allocUnsafe(Math.min(size, 4 * MiB));
  try {
    for (let written = 0; written < size; ) {
      const n = Math.min(block.length, size - written);
      randomFillSync(block, 0, n);
      await handle.write(block, 0, n, written);
      written += n;
    }
  } finally {
    await handle.close();
  }
}

/** One download of the whole job by one tool into a fresh folder; checks what landed. */
async function download(bench: Bench, job: Job, tool: Tool, ckptFlags: string[] = []): Promise<Measurement> {
  const out = join(bench.outRoot, tool);
  await run("rm", ["-rf", out]);
  mkdirSync(out, { recursive: true });
  const [cmd, args] = commandFor(bench, job, tool, out, ckptFlags);
  let sampler: RssSampler | null = null;
  let clientCpuMs = 0;
  let cpuTimer: NodeJS.Timeout | undefined;
  const serverCpuBefore = cpuTimeMs(bench.server.pid);
  const result = await run(cmd, args, {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, CKPT_API_URL: bench.server.baseUrl, CKPT_API_KEY: bench.apiKey },
    onSpawn: (child) => {
      sampler = new RssSampler(child.pid!).start();
      // /proc is gone once the process exits: keep the last reading (at most 20 ms short).
      cpuTimer = setInterval(() => {
        try {
          clientCpuMs = cpuTimeMs(child.pid!);
        } catch {
          /* exited */
        }
      }, 20);
    },
  });
  clearInterval(cpuTimer);
  const serverCpuSeconds = (cpuTimeMs(bench.server.pid) - serverCpuBefore) / 1000;
  const peakRssMiB = (sampler as RssSampler | null)?.stop() ?? Number.NaN;
  checkDownloaded(job, out, tool);
  await run("rm", ["-rf", out]);
  const summary = tool === "ckpt" ? (JSON.parse(result.stdout.trim().split("\n").at(-1)!) as { elapsedMs: number }) : null;
  return {
    seconds: result.ms / 1000,
    engineSeconds: summary ? summary.elapsedMs / 1000 : undefined,
    peakRssMiB,
    clientCpuSeconds: clientCpuMs / 1000,
    serverCpuSeconds,
  };
}

function commandFor(bench: Bench, job: Job, tool: Tool, out: string, ckptFlags: string[]): [string, string[]] {
  const localName = (f: CheckpointFile) => `rank-${f.node_rank}/${f.relative_file_name}`;
  if (tool === "ckpt")
    return [process.execPath, [CKPT_CLI, "download", "--project", job.projectId, "--job", job.jobId, "--out", out, "--json", ...ckptFlags]];
  if (tool === "aria2c") {
    const list = join(bench.work, "urls.txt");
    writeFileSync(list, job.files.map((f) => `${f.url}\n  out=${localName(f)}\n`).join(""));
    return ["aria2c", ["-x16", "-s16", "-j16", "-i", list, "-d", out, "--quiet", "--allow-overwrite=true", "--auto-file-renaming=false"]];
  }
  const config = join(bench.work, "curl.cfg");
  writeFileSync(config, job.files.map((f) => `url = "${f.url}"\noutput = "${join(out, localName(f))}"\n`).join(""));
  return ["curl", ["-sS", "--fail", "--create-dirs", "-K", config]];
}

/** Every file there with its size, and nothing else: a wrong download is no benchmark. */
function checkDownloaded(job: Job, out: string, tool: Tool): void {
  for (const f of job.files) {
    const path = join(out, `rank-${f.node_rank}`, f.relative_file_name);
    const size = statSync(path, { throwIfNoEntry: false })?.size;
    if (size !== f.size_bytes) throw new Error(`${tool}: ${path} has ${size} bytes, expected ${f.size_bytes}`);
  }
  const count = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? count(join(dir, e.name)) : 1), 0);
  if (count(out) !== job.files.length) throw new Error(`${tool}: ${count(out)} files in ${out}, expected ${job.files.length}`);
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const argv = process.argv.slice(2);
  const quick = argv.includes("--quick");
  const outDirAt = argv.indexOf("--out-dir");
  const outDir = outDirAt === -1 ? undefined : argv[outDirAt + 1];
  try {
    if (argv.includes("--sweep")) await runDownloadSweep({ quick, outDir });
    else console.log(formatTable(await runDownloadBench({ quick, outDir })));
  } finally {
    await runCleanups();
  }
}
