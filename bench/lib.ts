/**
 * Process plumbing shared by the scenarios: a cleanup registry (every server, nginx, cluster and
 * temp dir a scenario starts is stopped even when it fails), servers as child processes, CPU time
 * and RSS of a process from /proc, wrk and curl runs.
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../test/harness/server.js";

export { freePort };

const here = dirname(fileURLToPath(import.meta.url));
/** dist/cli/ckpt.cjs: the `ckpt` CLI as it ships (bundled by scripts/bundle-cli.mjs). */
export const CKPT_CLI = join(here, "..", "cli", "ckpt.cjs");
/** dist/bench/listing-server.js: a ckpt server the listing scenario can switch signing off in. */
export const BENCH_SERVER = join(here, "listing-server.js");
/** dist/bench/static-floor.js: the least a Node.js server can do to serve a file. */
export const STATIC_FLOOR = join(here, "static-floor.js");

// --- cleanup --------------------------------------------------------------------------------------

type Cleanup = () => unknown;
const cleanups: Cleanup[] = [];

/** Registers `fn` to run at the end of the run (or on failure); returns a function that runs it now. */
export function onCleanup(fn: Cleanup): () => Promise<void> {
  cleanups.push(fn);
  let done: Promise<void> | null = null;
  return () => {
    done ??= (async () => {
      const i = cleanups.indexOf(fn);
      if (i !== -1) cleanups.splice(i, 1);
      await fn();
    })();
    return done;
  };
}

/** Runs every registered cleanup, newest first; errors are reported, not thrown. */
export async function runCleanups(): Promise<void> {
  while (cleanups.length) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      console.error(`cleanup failed: ${(err as Error).message}`);
    }
  }
}

/** A fresh directory under the system temp dir, removed at cleanup (or by the returned function). */
export function tempDir(prefix: string): { path: string; remove: () => Promise<void> } {
  const path = mkdtempSync(join(tmpdir(), `ckpt-bench-${prefix}-`));
  return { path, remove: onCleanup(() => rmSync(path, { recursive: true, force: true })) };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// --- child processes ------------------------------------------------------------------------------

function killAndWait(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Runs a command to completion (killed at cleanup if the run is interrupted). `onSpawn` sees the
 * child, e.g. to sample its memory.
 */
export function run(
  cmd: string,
  args: string[],
  options: SpawnOptions & { onSpawn?: (child: ChildProcess) => void; check?: boolean } = {},
): Promise<RunResult> {
  const { onSpawn, check = true, ...spawnOptions } = options;
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...spawnOptions });
    const stop = onCleanup(() => killAndWait(child));
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d) => (stdout += d));
    child.stderr?.on("data", (d) => (stderr += d));
    child.on("error", (err) => {
      void stop();
      reject(err);
    });
    child.on("close", (code) => {
      void stop();
      const result = { code, stdout, stderr, ms: performance.now() - started };
      if (check && code !== 0) reject(new Error(`${cmd} ${args.join(" ")} exited ${code}:\n${stderr.slice(-2000)}`));
      else resolve(result);
    });
    onSpawn?.(child);
  });
}

export interface ServerHandle {
  baseUrl: string;
  port: number;
  pid: number;
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/**
 * A ckpt server as a child process, so its CPU time and memory are its own and the load
 * generator does not share its event loop. `script` defaults to `ckpt serve`; logging is at
 * warn (nginx runs with access_log off: neither side pays for per-request logs).
 */
export async function startServer(options: {
  dataDir: string;
  env?: NodeJS.ProcessEnv;
  /** e.g. ["--cpu-prof", "--cpu-prof-dir=..."] */
  nodeArgs?: string[];
  /** Another build of the ckpt CLI to run `serve` from (default: this one). */
  cli?: string;
  /** A server script taking --port and --data-dir instead of `ckpt serve`. */
  script?: string;
  scriptArgs?: string[];
}): Promise<ServerHandle> {
  const port = await freePort();
  const script = options.script ?? options.cli ?? CKPT_CLI;
  const args =
    options.script === undefined
      ? ["serve", "--port", String(port), "--data-dir", options.dataDir, "--log-level", "warn"]
      : ["--port", String(port), "--data-dir", options.dataDir, ...(options.scriptArgs ?? [])];
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), script, ...args], {
    // One process unless a scenario asks for workers: the scenarios read one pid's CPU and memory.
    env: { PATH: process.env.PATH, HOME: process.env.HOME, CKPT_WORKERS: "1", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stop = onCleanup(() => killAndWait(child, 10_000));
  let output = "";
  const keep = (d: Buffer) => {
    output += d;
    if (output.length > 64_000) output = output.slice(-32_000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`server exited early:\n${output}`);
    }
    if (await fetch(`${baseUrl}/healthz`).then((r) => r.ok, () => false)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`server did not come up:\n${output}`);
    }
    await sleep(50);
  }
  return { baseUrl, port, pid: child.pid!, child, output: () => output, stop };
}

// --- /proc ----------------------------------------------------------------------------------------

/** Clock ticks per second of /proc/<pid>/stat times: 100 on every Linux we run on. */
const CLK_TCK = 100;

/** User + system CPU time of a process so far, in milliseconds. */
export function cpuTimeMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / CLK_TCK;
}

/** The process's direct children (e.g. nginx's workers). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** CPU time of a process and its direct children (nginx: master + workers), in milliseconds. */
export function treeCpuTimeMs(pid: number): number {
  let total = cpuTimeMs(pid);
  for (const child of childPids(pid)) {
    try {
      total += cpuTimeMs(child);
    } catch {
      /* exited */
    }
  }
  return total;
}

function statusKb(pid: number, field: "VmRSS" | "VmHWM"): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}

/**
 * Peak resident memory of a process over an interval: VmRSS sampled every `everyMs`, together
 * with the kernel's own high-water mark (VmHWM), which is reset at `reset()` where the kernel
 * allows it (writing 5 to clear_refs), so a phase's peak is the phase's alone.
 */
export class RssSampler {
  private peakKb = 0;
  private timer: NodeJS.Timeout | null = null;
  private hwmUsable = false;

  constructor(
    private readonly pid: number,
    private readonly everyMs = 20,
  ) {}

  start(): this {
    this.reset();
    this.timer = setInterval(() => this.sample(), this.everyMs);
    return this;
  }

  reset(): void {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, "5");
      this.hwmUsable = true;
    } catch {
      this.hwmUsable = false;
    }
    this.peakKb = 0;
    this.sample();
  }

  private sample(): void {
    try {
      this.peakKb = Math.max(this.peakKb, statusKb(this.pid, "VmRSS"), this.hwmUsable ? statusKb(this.pid, "VmHWM") : 0);
    } catch {
      /* the process has exited: keep the last peak */
    }
  }

  /** Peak so far, in MiB. */
  peakMiB(): number {
    this.sample();
    return this.peakKb / 1024;
  }

  stop(): number {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    return this.peakMiB();
  }
}

export function rssMiB(pid: number): number {
  return statusKb(pid, "VmRSS") / 1024;
}

// --- wrk and curl ---------------------------------------------------------------------------------

export interface WrkResult {
  requests: number;
  seconds: number;
  requestsPerSec: number;
  bytesPerSec: number;
  latencyP50Ms: number;
  latencyP90Ms: number;
}

function parseDuration(s: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s);
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "ms" ? n : m[2] === "s" ? n * 1000 : n * 60_000;
}

function parseSize(s: string): number {
  const m = /^([\d.]+)([KMGT]?B)$/.exec(s);
  if (!m) return Number.NaN;
  const mult = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }[m[2] as "B"];
  return Number(m[1]) * mult;
}

/**
 * Runs wrk against `url` and fails on any socket error or non-2xx answer (a benchmark of errors
 * is no benchmark). `lua` is a script body (wrk's request()/init() hooks).
 */
export async function wrk(options: {
  url: string;
  seconds: number;
  connections: number;
  threads?: number;
  headers?: Record<string, string>;
  lua?: string;
  dir: string;
}): Promise<WrkResult> {
  const args = ["-t", String(options.threads ?? 1), "-c", String(options.connections), "-d", `${options.seconds}s`, "--latency", "--timeout", "60s"];
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push("-H", `${k}: ${v}`);
  if (options.lua) {
    const script = join(options.dir, `wrk-${Math.random().toString(36).slice(2)}.lua`);
    writeFileSync(script, options.lua);
    args.push("-s", script);
  }
  args.push(options.url);
  const { stdout } = await run("wrk", args);
  const errors = /Socket errors: (.*)/.exec(stdout);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  if (non2xx) throw new Error(`wrk: ${non2xx[1]} non-2xx answers from ${options.url}\n${stdout}`);
  if (errors && /(connect|read|write|timeout) [1-9]/.test(errors[1]!)) throw new Error(`wrk: socket errors (${errors[1]})\n${stdout}`);
  const total = /(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read/.exec(stdout);
  const p50 = /^\s+50%\s+(\S+)/m.exec(stdout);
  const p90 = /^\s+90%\s+(\S+)/m.exec(stdout);
  if (!total) throw new Error(`wrk: unexpected output\n${stdout}`);
  const seconds = parseDuration(total[2]!) / 1000;
  return {
    requests: Number(total[1]),
    seconds,
    requestsPerSec: Number(total[1]) / seconds,
    bytesPerSec: parseSize(total[3]!) / seconds,
    latencyP50Ms: p50 ? parseDuration(p50[1]!) : Number.NaN,
    latencyP90Ms: p90 ? parseDuration(p90[1]!) : Number.NaN,
  };
}

/** A Lua array literal of strings, for wrk scripts. */
export function luaStrings(items: readonly string[]): string {
  return `{${items.map((s) => JSON.stringify(s)).join(",\n")}}`;
}

/** One GET with curl to /dev/null; returns bytes per second (curl's own figure). */
export async function curlDownloadSpeed(url: string): Promise<number> {
  const { stdout } = await run("curl", ["-sS", "--fail", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}", url]);
  return Number(stdout.trim().split(" ")[0]);
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
