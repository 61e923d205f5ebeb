// Throwaway Ceph RADOS Gateway (a real, signature-checking S3) for tests, via
// scripts/rgw/start-rgw.sh / stop-rgw.sh.
//
//   const s3 = await startRgw();               // null when radosgw/ceph are not installed
//   if (!s3) ...skip (see required.ts)
//   const bucket = await s3.createBucket();
//   new S3Client(s3.s3Config)                  // endpoint, credentials, path style, checksums
//   await s3.stop();                           // idempotent; stops all daemons, deletes the dir
//
// Each call starts its own mon + memstore OSD + radosgw in a fresh temp dir on random free
// loopback ports, so several can run at once (parallel test processes). A detached watchdog
// runs stop-rgw.sh if this process dies without stop().
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateBucketCommand, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";

/**
 * RGW verifies SigV4 with whatever region the request's credential scope names (any region
 * signs fine), but CreateBucket rejects a LocationConstraint other than its zonegroup's
 * ("default") with InvalidLocationConstraint; the SDK sends none only for us-east-1. So: us-east-1.
 */
export const RGW_REGION = "us-east-1";

export interface RgwInstance {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** Ready-made config for `new S3Client(...)`: path style, checksums only when required. */
  s3Config: S3ClientConfig;
  /** instance directory (ceph.conf, logs in log/, pid files in run/) */
  dir: string;
  /** Stops radosgw, then OSD + mon, and deletes the dir. Idempotent. */
  stop(): Promise<void>;
  /** Creates a bucket (unique name unless given) and returns its name. */
  createBucket(name?: string): Promise<string>;
  /** Stops the gateway alone (SIGTERM to radosgw; mon and OSD keep the data), for outage tests. */
  stopGateway(): Promise<void>;
  /** Starts radosgw again as it was started, and resolves once it answers HTTP. */
  startGateway(): Promise<void>;
}

/** Repo root: walk up from this file (src in test/harness/, compiled in dist/test/harness/). */
function findRepoRoot(): string | null {
  let first: string | null = null;
  for (let d = dirname(fileURLToPath(import.meta.url)); ; d = dirname(d)) {
    if (existsSync(join(d, "package.json"))) {
      first ??= d;
      if (existsSync(join(d, "scripts", "rgw", "start-rgw.sh"))) return d;
    }
    if (d === dirname(d)) return first;
  }
}

function scriptPath(name: "start-rgw.sh" | "stop-rgw.sh"): string | null {
  const root = findRepoRoot();
  const p = root ? join(root, "scripts", "rgw", name) : null;
  return p && existsSync(p) ? p : null;
}

function onPath(cmd: string): boolean {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (!dir) continue;
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      if (statSync(join(dir, cmd)).isFile()) return true;
    } catch {
      /* next */
    }
  }
  return false;
}

const REQUIRED_BINS = ["bash", "radosgw", "radosgw-admin", "ceph-mon", "ceph-osd", "monmaptool", "osdmaptool", "ceph-authtool"];

/** True when radosgw + ceph daemons/tools are installed and the repo's scripts are present. */
export function rgwAvailable(): boolean {
  return REQUIRED_BINS.every(onPath) && scriptPath("start-rgw.sh") !== null && scriptPath("stop-rgw.sh") !== null;
}

function listenable(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => resolvePromise(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolvePromise(true)));
  });
}

/** A currently free port on 127.0.0.1 (the kernel's pick for port 0). */
function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolvePromise(port) : reject(new Error("no port"))));
    });
  });
}

/** Free port p with p+1 free too (the monitor's msgr v1 and v2 ports). */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p < 65535 && (await listenable(p + 1))) return p;
  }
  throw new Error("no free pair of consecutive loopback ports found");
}

function run(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(file, args, { env, timeout: timeoutMs, killSignal: "SIGTERM", maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolvePromise({ code, stdout: String(stdout), stderr: String(stderr) + (err && typeof err.code !== "number" ? `\n${err.message}` : "") });
    });
  });
}

const randomKey = (len: number, alphabet: string): string =>
  Array.from(randomBytes(len), (b) => alphabet[b % alphabet.length]).join("");

/** pid alive and not a zombie */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function daemonPids(rgwDir: string): number[] {
  const run = join(rgwDir, "run");
  try {
    return readdirSync(run)
      .filter((f) => f.endsWith(".pid"))
      .map((f) => Number(readFileSync(join(run, f), "utf8").trim()))
      .filter((p) => Number.isInteger(p) && p > 0);
  } catch {
    return [];
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Detached shell that runs stop-rgw.sh and deletes base once this process is gone. */
function startWatchdog(rgwDir: string, base: string, stopScript: string): number | undefined {
  const script = [
    'while kill -0 "$0" 2>/dev/null; do sleep 1; done',
    'RGW_DIR="$1" bash "$3" >/dev/null 2>&1',
    'rm -rf "$2"',
  ].join("\n");
  try {
    const child = spawn("sh", ["-c", script, String(process.pid), rgwDir, base, stopScript], { detached: true, stdio: "ignore" });
    child.on("error", () => {});
    child.unref();
    return child.pid;
  } catch {
    return undefined;
  }
}

function killGroup(pid: number | undefined): void {
  if (!pid) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    /* already gone */
  }
}

/**
 * Starts a throwaway single-node Ceph RGW. Resolves to null (without throwing) when radosgw or
 * the ceph daemons are not installed; throws (with the script's log tails) when start fails.
 */
export async function startRgw(): Promise<RgwInstance | null> {
  const startScript = scriptPath("start-rgw.sh");
  const stopScript = scriptPath("stop-rgw.sh");
  if (!rgwAvailable() || !startScript || !stopScript) return null;

  let lastErr: Error | null = null;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const base = mkdtempSync(join(tmpdir(), "ckpt-rgw-"));
    const rgwDir = join(base, "rgw");
    const accessKeyId = randomKey(20, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    const secretAccessKey = randomKey(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
    const rgwPort = await freePort();
    const monPort = await freePortPair();
    const env = {
      ...process.env,
      RGW_DIR: rgwDir,
      RGW_PORT: String(rgwPort),
      MON_PORT: String(monPort),
      S3_ACCESS_KEY: accessKeyId,
      S3_SECRET_KEY: secretAccessKey,
    };
    const stopEnv = { ...process.env, RGW_DIR: rgwDir };
    const watchdog = startWatchdog(rgwDir, base, stopScript);
    const res = await run("bash", [startScript], env, 120_000);
    const ready = /^RGW_READY (http:\/\/\S+)/m.exec(res.stdout);
    if (res.code !== 0 || !ready) {
      // the script cleans up after itself on failure; make sure anyway
      await run("bash", [stopScript], stopEnv, 60_000);
      killGroup(watchdog);
      rmSync(base, { recursive: true, force: true });
      lastErr = new Error(`start-rgw.sh failed (exit ${res.code}):\n${res.stdout}\n${res.stderr}`.trim());
      if (/already in use|EADDRINUSE|failed to bind/i.test(res.stderr)) continue; // port race: retry
      break;
    }
    const endpoint = ready[1]!;
    const s3Config: S3ClientConfig = {
      endpoint,
      region: RGW_REGION,
      credentials: { accessKeyId, secretAccessKey },
      forcePathStyle: true,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    };
    let client: S3Client | null = null;
    let stopped: Promise<void> | null = null;
    let bucketCounter = 0;
    let gatewayArgv: string[] | undefined;
    return {
      endpoint,
      accessKeyId,
      secretAccessKey,
      region: RGW_REGION,
      s3Config,
      dir: rgwDir,
      stop() {
        stopped ??= (async () => {
          client?.destroy();
          client = null;
          const pids = daemonPids(rgwDir);
          const res = await run("bash", [stopScript], stopEnv, 60_000);
          // daemons are not our children: wait until they have really disappeared
          for (let i = 0; i < 100 && pids.some(alive); i++) await sleep(50);
          killGroup(watchdog);
          rmSync(base, { recursive: true, force: true });
          if (res.code !== 0) throw new Error(`stop-rgw.sh failed (exit ${res.code}): ${res.stderr}`);
        })();
        return stopped;
      },
      async stopGateway() {
        const pid = Number(readFileSync(join(rgwDir, "run", "rgw.pid"), "utf8").trim());
        gatewayArgv ??= readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
        process.kill(pid, "SIGTERM");
        for (let i = 0; i < 400 && alive(pid); i++) await sleep(50);
        if (alive(pid)) process.kill(pid, "SIGKILL");
      },
      async startGateway() {
        if (!gatewayArgv) throw new Error("startGateway() without stopGateway() first");
        const [file, ...args] = gatewayArgv;
        // radosgw daemonizes itself; the watchdog and stop-rgw.sh find it by its -c argument.
        const child = spawn(file!, args, { detached: true, stdio: "ignore" });
        child.on("error", () => {});
        child.unref();
        for (let i = 0; i < 1200; i++) {
          const ok = await fetch(endpoint, { signal: AbortSignal.timeout(2000) }).then(() => true, () => false);
          if (ok) return;
          await sleep(50);
        }
        throw new Error("radosgw did not come back");
      },
      async createBucket(name?: string) {
        const bucket = name ?? `test-${process.pid}-${++bucketCounter}-${randomBytes(4).toString("hex")}`;
        client ??= new S3Client(s3Config);
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        return bucket;
      },
    };
  }
  throw lastErr ?? new Error("start-rgw.sh failed");
}
