// Throwaway PostgreSQL clusters for tests.
//
//   const pg = await startPostgres();          // null when PostgreSQL is not installed
//   if (!pg) ...skip (see required.ts)
//   const url = await pg.createDatabase();     // fresh, uniquely named database
//   ...
//   await pg.stop();                           // idempotent; stops the server, deletes the dir
//
// Each call makes a new cluster with initdb in a fresh temp dir, on a free loopback port, with
// its unix socket inside that dir, fsync off, trust auth. initdb/pg_ctl refuse to run as root,
// so as root they run as the `postgres` OS user (runuser, else su) and the dir is chowned to it.
// A detached watchdog stops the server and deletes the dir if this process dies without stop().
import { execFile, execFileSync, spawn } from "node:child_process";
import { accessSync, appendFileSync, chmodSync, chownSync, constants, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";

export interface PostgresInstance {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  /** temp dir holding the data dir (`data/`), the log (`postgres.log`) and the unix socket */
  dir: string;
  /** Stops the server (fast shutdown) and deletes the dir. Idempotent. */
  stop(): Promise<void>;
  /** Creates a fresh database (unique name unless given) and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Stops the server (fast shutdown: connections are cut) and keeps its data, for outage tests. */
  stopServer(): Promise<void>;
  /** Starts the stopped server again on the same port and data; resolves once it accepts connections. */
  startServer(): Promise<void>;
}

interface PgBin {
  initdb: string;
  pgCtl: string;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function binIn(dir: string): PgBin | null {
  const initdb = join(dir, "initdb");
  const pgCtl = join(dir, "pg_ctl");
  // pg_ctl starts the `postgres` next to it, so all three must be in the same directory
  return isExecutable(initdb) && isExecutable(pgCtl) && isExecutable(join(dir, "postgres")) ? { initdb, pgCtl } : null;
}

let cachedBin: PgBin | null | undefined;
/** Locates initdb/pg_ctl/postgres: $PG_BIN, newest /usr/lib/postgresql/N/bin, then $PATH. */
function findPgBin(): PgBin | null {
  if (cachedBin !== undefined) return cachedBin;
  const candidates: string[] = [];
  if (process.env.PG_BIN) candidates.push(process.env.PG_BIN);
  try {
    const versions = readdirSync("/usr/lib/postgresql")
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(`/usr/lib/postgresql/${v}/bin`);
  } catch {
    /* not a Debian-style install */
  }
  for (const dir of (process.env.PATH ?? "").split(":").filter(Boolean)) {
    const initdb = join(dir, "initdb");
    if (!isExecutable(initdb)) continue;
    try {
      // /usr/local/bin/initdb may be a symlink into the real bin dir
      candidates.push(dirname(execFileSync("readlink", ["-f", initdb], { encoding: "utf8" }).trim()));
    } catch {
      candidates.push(dir);
    }
  }
  for (const dir of candidates) {
    const bin = binIn(dir);
    if (bin) return (cachedBin = bin);
  }
  return (cachedBin = null);
}

const isRoot = (): boolean => process.getuid?.() === 0;

let cachedPgUser: { uid: number; gid: number } | null | undefined;
function postgresUser(): { uid: number; gid: number } | null {
  if (cachedPgUser !== undefined) return cachedPgUser;
  try {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
    cachedPgUser = Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
  } catch {
    cachedPgUser = null;
  }
  return cachedPgUser;
}

function onPath(cmd: string): string | null {
  for (const dir of [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/bin", "/bin"]) {
    if (dir && isExecutable(join(dir, cmd))) return join(dir, cmd);
  }
  return null;
}

/** True when a cluster can be started here: binaries found and (as root) a `postgres` user to run them. */
export function postgresAvailable(): boolean {
  if (!findPgBin()) return false;
  if (!isRoot()) return true;
  return postgresUser() !== null && (onPath("runuser") !== null || onPath("su") !== null);
}

const shQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs a PostgreSQL tool, as the `postgres` OS user when we are root. */
function runPg(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  let file = cmd;
  let argv = args;
  if (isRoot()) {
    const runuser = onPath("runuser");
    if (runuser) {
      file = runuser;
      argv = ["-u", "postgres", "--", cmd, ...args];
    } else {
      file = onPath("su") ?? "su";
      argv = ["postgres", "-s", "/bin/sh", "-c", [cmd, ...args].map(shQuote).join(" ")];
    }
  }
  return new Promise((resolvePromise, reject) => {
    execFile(
      file,
      argv,
      { cwd, timeout: timeoutMs, env: { ...process.env, LC_ALL: "C", LANG: "C" }, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          const e = new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${stdout}\n${stderr}`.trim());
          reject(e);
        } else resolvePromise({ stdout, stderr });
      },
    );
  });
}

/** A currently free TCP port on 127.0.0.1 (the kernel's pick for port 0). */
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

/** tmpdir(), unless (as root) the postgres user could not reach it; then /tmp. */
function baseTmp(): string {
  const t = resolve(tmpdir());
  if (!isRoot()) return t;
  for (let d = t; ; d = dirname(d)) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return "/tmp";
    } catch {
      return "/tmp";
    }
    if (d === dirname(d)) return t;
  }
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** pid alive and not a zombie */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

function postmasterPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Detached shell that, once this process is gone, kills the postmaster and deletes dir. */
function startWatchdog(dir: string, dataDir: string): number | undefined {
  const script = [
    'while kill -0 "$0" 2>/dev/null; do sleep 1; done',
    'pid=$(head -n1 "$2/postmaster.pid" 2>/dev/null)',
    'if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then',
    '  for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done',
    '  kill -KILL "$pid" 2>/dev/null',
    'fi',
    'rm -rf "$1"',
  ].join("\n");
  try {
    const child = spawn("sh", ["-c", script, String(process.pid), dir, dataDir], { detached: true, stdio: "ignore" });
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

let dbCounter = 0;

/**
 * Starts a throwaway PostgreSQL cluster. Resolves to null (without throwing) when the
 * binaries are not installed; throws when they are but the cluster fails to start.
 */
export async function startPostgres(): Promise<PostgresInstance | null> {
  const bin = findPgBin();
  if (!bin || !postgresAvailable()) return null;
  const pgUser = isRoot() ? postgresUser() : null;

  let lastErr: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const dir = mkdtempSync(join(baseTmp(), "ckpt-pg-"));
    const dataDir = join(dir, "data");
    const logFile = join(dir, "postgres.log");
    if (pgUser) {
      chmodSync(dir, 0o700);
      chownSync(dir, pgUser.uid, pgUser.gid);
    }
    const watchdog = startWatchdog(dir, dataDir);
    const cleanup = (): void => {
      const pid = postmasterPid(dataDir);
      if (pid && alive(pid)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          /* gone */
        }
      }
      killGroup(watchdog);
      rmSync(dir, { recursive: true, force: true });
    };
    try {
      const port = await freePort();
      await runPg(bin.initdb, ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "-N"], dir, 60_000);
      appendFileSync(
        join(dataDir, "postgresql.conf"),
        [
          "",
          "# throwaway test cluster (test/harness/postgres.ts)",
          "listen_addresses = '127.0.0.1'",
          `port = ${port}`,
          `unix_socket_directories = '${dir}'`,
          "fsync = off",
          "synchronous_commit = off",
          "full_page_writes = off",
          "max_connections = 200",
          "",
        ].join("\n"),
      );
      try {
        await runPg(bin.pgCtl, ["-D", dataDir, "-l", logFile, "-w", "-t", "60", "-s", "start"], dir, 90_000);
      } catch (e) {
        const log = tail(logFile);
        const err = new Error(`${(e as Error).message}\n--- ${logFile}\n${log}`);
        if (/could not (bind|create listen)|already in use/i.test(log)) (err as Error & { retry?: boolean }).retry = true;
        throw err;
      }
      const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
      let stopped: Promise<void> | null = null;
      const instance: PostgresInstance = {
        url,
        port,
        dir,
        stop() {
          stopped ??= (async () => {
            const pid = postmasterPid(dataDir);
            try {
              await runPg(bin.pgCtl, ["-D", dataDir, "-m", "fast", "-w", "-t", "20", "-s", "stop"], dir, 30_000);
            } catch {
              if (pid && alive(pid)) {
                try {
                  process.kill(pid, "SIGKILL");
                } catch {
                  /* gone */
                }
              }
            }
            // the postmaster is not our child: wait until it (and its children) are really gone
            for (let i = 0; pid && alive(pid) && i < 100; i++) await sleep(50);
            killGroup(watchdog);
            rmSync(dir, { recursive: true, force: true });
          })();
          return stopped;
        },
        async stopServer() {
          await runPg(bin.pgCtl, ["-D", dataDir, "-m", "fast", "-w", "-t", "20", "-s", "stop"], dir, 30_000);
        },
        async startServer() {
          await runPg(bin.pgCtl, ["-D", dataDir, "-l", logFile, "-w", "-t", "60", "-s", "start"], dir, 90_000);
        },
        async createDatabase(name?: string) {
          const db = name ?? `t_${process.pid}_${++dbCounter}_${randomBytes(4).toString("hex")}`;
          const client = new pg.Client({ connectionString: url });
          await client.connect();
          try {
            await client.query(`CREATE DATABASE ${client.escapeIdentifier(db)}`);
          } finally {
            await client.end();
          }
          return `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(db)}`;
        },
      };
      return instance;
    } catch (e) {
      lastErr = e;
      cleanup();
      if (!(e as { retry?: boolean }).retry) break;
    }
  }
  throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
}
