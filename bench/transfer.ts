/**
 * Scenario 7, the transfer engine: `ckpt download` against `curl -Z --parallel-max 16` and
 * `aria2c -x16 -s16 -j16`, all fetching the same checkpoint from the same nginx, from tmpfs to
 * tmpfs, in the same rounds (the order rotates from round to round).
 *
 *   node dist/bench/transfer.js [--quick] [--profile DIR]
 *
 * The checkpoint: 4 large shards and 200 files of 30 KB (full: 4 x 1 GiB; quick: 4 x 128 MiB),
 * in /dev/shm, served by nginx (sendfile, one worker per core). The listing is Baseten-shaped
 * (presigned_urls with url, relative_file_name, node_rank, size_bytes, last_modified), answered
 * by a small server in this process, and announces no digest: nginx sends no x-ckpt-sha256, so
 * ckpt checks sizes only, like curl and aria2c (its default; `--hash` hashes every file for the
 * manifest all the same, a side of its own). A second nginx location set adds x-ckpt-sha256
 * to every file (as ckpt's blob route and S3 metadata do): the same download with SHA-256
 * verification, against itself without.
 *
 * Each client runs under /usr/bin/time: wall time, user + system CPU of the process and its
 * threads/children, and peak RSS, all from the kernel. ckpt also fsyncs each file before its
 * rename (free on tmpfs); two more sides show where its time goes (bench/transfer-sides.ts): the
 * engine alone without the CLI, and SHA-256 of the same bytes alone. --profile writes a V8 CPU
 * profile of one extra ckpt run per thread (main and hashing workers) into DIR, for
 * bench/cpuprofile-summary.ts. BENCH_BASELINE_CLI=<path to another build's dist/cli/ckpt.cjs>
 * adds that build as a fifth side (before/after).
 */
import { createHash, randomFillSync } from "node:crypto";
import { existsSync, mkdirSync, openSync, closeSync, writeSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { CKPT_CLI, MiB, onCleanup, run, tempDir } from "./lib.js";
import { fmt, median, row, type Row } from "./report.js";
import { startNginx } from "./serving.js";

interface Fixture {
  large: number;
  largeSize: number;
  small: number;
  smallSize: number;
  rounds: number;
}
const FULL: Fixture = { large: 4, largeSize: 1024 * MiB, small: 200, smallSize: 30_000, rounds: 3 };
const QUICK: Fixture = { large: 4, largeSize: 128 * MiB, small: 200, smallSize: 30_000, rounds: Number(process.env.BENCH_ROUNDS ?? 2) };

export interface Measured {
  wall: number;
  user: number;
  sys: number;
  rssMiB: number;
}

interface SourceFile {
  name: string;
  size: number;
  sha256: string;
}

/** Writes the checkpoint into `root/blobs/` (random bytes, so nothing compresses or dedups). */
function writeCheckpoint(root: string, fx: Fixture): SourceFile[] {
  const files: SourceFile[] = [];
  const block = Buffer.allocUnsafe(8 * MiB);
  const write = (name: string, size: number): void => {
    const path = join(root, "blobs", name);
    mkdirSync(join(path, ".."), { recursive: true });
    const hash = createHash("sha256");
    const fd = openSync(path, "w");
    for (let done = 0; done < size; ) {
      const n = Math.min(block.length, size - done);
      randomFillSync(block, 0, n);
      writeSync(fd, block, 0, n);
      hash.update(block.subarray(0, n));
      done += n;
    }
    closeSync(fd);
    files.push({ name, size, sha256: hash.digest("hex") });
  };
  for (let i = 0; i < fx.large; i++) write(`checkpoint-1000/model-0000${i + 1}-of-0000${fx.large}.safetensors`, fx.largeSize);
  for (let i = 0; i < fx.small; i++) write(`checkpoint-1000/extra/part-${String(i).padStart(4, "0")}.json`, fx.smallSize);
  return files;
}

/** A Baseten-shaped API for one project and job whose URLs point at `blobBase` (nginx). */
export async function startListing(
  files: readonly { name: string; size: number }[],
  blobBase: () => string,
  presign?: (name: string) => Promise<string>,
): Promise<{ url: string; close: () => Promise<void> }> {
  const presigned = new Map<string, string>();
  if (presign) for (const f of files) presigned.set(f.name, await presign(f.name));
  const urlOf = (f: { name: string }): string => presigned.get(f.name) ?? `${blobBase()}/blobs/${f.name}?X-Amz-Expires=604800&X-Amz-Signature=${"0".repeat(64)}`;
  const created = "2026-01-01T00:00:00Z";
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (body: unknown): void => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (path === "/v1/training_projects") return send({ training_projects: [{ id: "proj", name: "proj", created_at: created, updated_at: created }] });
    if (path === "/v1/training_projects/proj/jobs/job") return send({ training_job: { id: "job", training_project_id: "proj", created_at: created, updated_at: created } });
    if (path === "/v1/training_projects/proj/jobs/job/checkpoint_files")
      return send({
        presigned_urls: files.map((f) => ({
          url: urlOf(f),
          relative_file_name: f.name,
          node_rank: 0,
          size_bytes: f.size,
          last_modified: created,
        })),
        next_page_token: null,
        total_count: files.length,
      });
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ message: "not found" }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const close = onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close };
}

/** Runs a command under /usr/bin/time and returns what the kernel accounted for it. */
export async function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Measured> {
  const report = join(tempDir("time").path, "time.txt");
  await run("/usr/bin/time", ["-f", "%e %U %S %M", "-o", report, cmd, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } });
  const [wall, user, sys, rssKb] = readFileSync(report, "utf8").trim().split("\n").at(-1)!.split(" ").map(Number);
  rmSync(join(report, ".."), { recursive: true, force: true });
  return { wall: wall!, user: user!, sys: sys!, rssMiB: rssKb! / 1024 };
}

export async function runTransferBench(opts: { quick: boolean; profileDir?: string }): Promise<Row[]> {
  const fx = opts.quick ? QUICK : FULL;
  for (const tool of ["/usr/bin/time", "/usr/bin/curl", "/usr/bin/aria2c"])
    if (!existsSync(tool)) return [row({ scenario: "7. transfer", ckpt: Number.NaN, anchor: Number.NaN, unit: "", note: `skipped: ${tool} is not installed` })];
  const shm = existsSync("/dev/shm") ? "/dev/shm" : undefined;
  const source = tempDir("transfer-src");
  const sourceRoot = shm ? join(shm, `ckpt-bench-src-${process.pid}`) : source.path;
  const outRoot = shm ? join(shm, `ckpt-bench-out-${process.pid}`) : tempDir("transfer-out").path;
  const removeDirs = onCleanup(async () => {
    rmSync(sourceRoot, { recursive: true, force: true });
    rmSync(outRoot, { recursive: true, force: true });
    await source.remove();
  });
  try {
    const files = writeCheckpoint(sourceRoot, fx);
    const totalBytes = files.reduce((s, f) => s + f.size, 0);
    // The same files, each with its digest announced the way ckpt's blob route does.
    const digestConfig = `location /with-digest/blobs/ {
      alias ${sourceRoot}/blobs/;
      ${files.map((f) => `location = /with-digest/blobs/${f.name} { alias ${sourceRoot}/blobs/${f.name}; add_header x-ckpt-sha256 ${f.sha256}; }`).join("\n      ")}
    }`;
    const nginx = await startNginx(sourceRoot, { serverConfig: digestConfig });
    if (!nginx) return [row({ scenario: "7. transfer", ckpt: Number.NaN, anchor: Number.NaN, unit: "", note: "skipped: nginx is not installed" })];
    let withDigest = false;
    const listing = await startListing(files, () => (withDigest ? `${nginx.baseUrl}/with-digest` : nginx.baseUrl));
    const urlsFor = files.map((f) => ({ url: `${nginx.baseUrl}/blobs/${f.name}?X-Amz-Signature=x`, out: `rank-0/${f.name}` }));
    const lists = tempDir("transfer-lists");
    const curlConfig = join(lists.path, "curl.txt");
    writeFileSync(curlConfig, urlsFor.map((u) => `url = "${u.url}"\noutput = "${u.out}"\n`).join(""));
    const ariaList = join(lists.path, "aria2.txt");
    writeFileSync(ariaList, urlsFor.map((u) => `${u.url}\n  out=${u.out}\n`).join(""));

    const out = (name: string): string => {
      const dir = join(outRoot, name);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      return dir;
    };
    const env = { CKPT_API_URL: listing.url, CKPT_API_KEY: "bench" };
    const ckptArgs = (dir: string): string[] => [CKPT_CLI, "download", "--project", "proj", "--job", "job", "--out", dir, "--quiet"];
    const sides: Record<string, () => Promise<Measured>> = {
      ckpt: async () => {
        withDigest = false;
        return timed(process.execPath, ckptArgs(out("ckpt")), env);
      },
      // No digest is announced, and --hash computes every file's for the manifest all the same.
      "ckpt --hash": async () => {
        withDigest = false;
        return timed(process.execPath, [...ckptArgs(out("ckpt-hash")), "--hash"], env);
      },
      "ckpt+sha256": async () => {
        withDigest = true;
        return timed(process.execPath, ckptArgs(out("ckpt-sha")), env);
      },
      curl: async () => {
        const dir = out("curl");
        return timed("curl", ["-Z", "--parallel-max", "16", "-s", "-f", "--create-dirs", "--output-dir", dir, "-K", curlConfig]);
      },
      aria2c: async () => {
        const dir = out("aria2c");
        return timed("aria2c", ["-x16", "-s16", "-j16", "-q", "--allow-overwrite=true", "--auto-file-renaming=false", "--file-allocation=none", "-d", dir, "-i", ariaList]);
      },
    };
    // Where ckpt's cost over curl's comes from: the engine without the CLI, and the hashing that
    // --hash adds alone (one thread reading the source files from tmpfs).
    const sidesScript = fileURLToPath(new URL("./transfer-sides.js", import.meta.url));
    sides["engine, no hashing"] = async () => {
      withDigest = false;
      return timed(process.execPath, [sidesScript, "engine", listing.url, out("engine")]);
    };
    sides["sha256 alone"] = async () => timed(process.execPath, [sidesScript, "sha256", ...files.map((f) => join(sourceRoot, "blobs", f.name))]);
    // Another build of ckpt (e.g. the commit before a change), as a side of its own.
    const baseline = process.env.BENCH_BASELINE_CLI;
    if (baseline)
      sides["ckpt baseline"] = async () => {
        withDigest = false;
        return timed(process.execPath, [baseline, ...ckptArgs(out("baseline")).slice(1)], env);
      };
    const results: Record<string, Measured[]> = Object.fromEntries(Object.keys(sides).map((k) => [k, []]));
    const names = Object.keys(sides);
    // One untimed curl run first: the first download onto a fresh tmpfs pays for allocating its
    // pages (in system time, several seconds more), which would otherwise land on whichever side
    // happens to open round 1.
    await sides.curl!();
    rmSync(outRoot, { recursive: true, force: true });
    for (let round = 0; round < fx.rounds; round++) {
      const order = names.map((_, i) => names[(i + round) % names.length]!);
      for (const name of order) {
        const m = await sides[name]!();
        results[name]!.push(m);
        console.error(`   round ${round + 1} ${name}: ${fmt(m.wall)} s wall, ${fmt(m.user)} user + ${fmt(m.sys)} sys, ${fmt(m.rssMiB)} MiB`);
        rmSync(join(outRoot), { recursive: true, force: true });
      }
    }
    if (opts.profileDir) {
      withDigest = true;
      await run(process.execPath, ["--cpu-prof", `--cpu-prof-dir=${opts.profileDir}`, ...ckptArgs(out("profile"))], { env: { PATH: process.env.PATH, ...env } });
    }
    await listing.close();
    await nginx.stop();
    await lists.remove();

    const med = (name: string, f: (m: Measured) => number): number => median(results[name]!.map(f));
    const wall = (name: string) => med(name, (m) => m.wall);
    const cpu = (name: string) => med(name, (m) => m.user + m.sys);
    const split = (name: string) => `${fmt(med(name, (m) => m.user))} user + ${fmt(med(name, (m) => m.sys))} sys`;
    const label = `${fx.large} x ${fx.largeSize / MiB >= 1024 ? `${fx.largeSize / 1024 / MiB} GiB` : `${fx.largeSize / MiB} MiB`} + ${fx.small} x 30 KB`;
    const quickNote = opts.quick ? "quick mode: 128 MiB shards instead of 1 GiB; " : "";
    const mibs = (name: string) => fmt(totalBytes / MiB / wall(name));
    const baselineRows = baseline
      ? [
          row({
            scenario: "7. transfer: ckpt vs the BENCH_BASELINE_CLI build (wall)",
            ckpt: wall("ckpt"),
            anchor: wall("ckpt baseline"),
            unit: "s",
            note: `CPU ${split("ckpt")} vs ${split("ckpt baseline")}`,
          }),
        ]
      : [];
    return [
      ...baselineRows,
      row({
        scenario: `7. transfer, nginx + tmpfs, ${label}, no digests: ckpt download vs curl -Z --parallel-max 16 (wall)`,
        ckpt: wall("ckpt"),
        anchor: wall("curl"),
        unit: "s",
        target: "<= 1.2x",
        meets: (r) => r <= 1.2,
        note: `${quickNote}median of ${fx.rounds} rotating rounds; ${mibs("ckpt")} vs ${mibs("curl")} MiB/s`,
      }),
      row({
        scenario: "7. transfer: client CPU (user + sys), ckpt vs curl",
        ckpt: cpu("ckpt"),
        anchor: cpu("curl"),
        unit: "CPU s",
        target: "<= 1.5x",
        meets: (r) => r <= 1.5,
        note: `ckpt ${split("ckpt")}, curl ${split("curl")}`,
      }),
      row({
        scenario: "7. transfer: ckpt download --hash (every file hashed for the manifest) vs curl (wall)",
        ckpt: wall("ckpt --hash"),
        anchor: wall("curl"),
        unit: "s",
        note: `${mibs("ckpt --hash")} vs ${mibs("curl")} MiB/s`,
      }),
      row({
        scenario: "7. transfer: client CPU (user + sys), ckpt download --hash vs curl",
        ckpt: cpu("ckpt --hash"),
        anchor: cpu("curl"),
        unit: "CPU s",
        note: `ckpt ${split("ckpt --hash")}, curl ${split("curl")}`,
      }),
      row({
        scenario: "7. transfer: the download engine alone (SDK, no CLI) vs curl (wall)",
        ckpt: wall("engine, no hashing"),
        anchor: wall("curl"),
        unit: "s",
        note: `CPU ${split("engine, no hashing")} = ${fmt(cpu("engine, no hashing") / cpu("curl"))}x curl's`,
      }),
      row({
        scenario: "7. transfer: SHA-256 of the same bytes alone (one thread, from tmpfs) vs curl's whole download (CPU)",
        ckpt: cpu("sha256 alone"),
        anchor: cpu("curl"),
        unit: "CPU s",
        note: `${split("sha256 alone")}; the least any client that hashes what it downloads adds to curl's CPU`,
      }),
      row({
        scenario: "7. transfer: ckpt download vs aria2c -x16 -s16 -j16 (wall)",
        ckpt: wall("ckpt"),
        anchor: wall("aria2c"),
        unit: "s",
        note: `aria2c ${mibs("aria2c")} MiB/s, CPU ${split("aria2c")}`,
      }),
      row({
        scenario: "7. transfer: SHA-256 announced and verified (worker threads) vs not announced (wall)",
        ckpt: wall("ckpt+sha256"),
        anchor: wall("ckpt"),
        unit: "s",
        target: "<= 1.1x",
        meets: (r) => r <= 1.1,
        note: `CPU with verification ${split("ckpt+sha256")}; same nginx, the digest added as x-ckpt-sha256`,
      }),
      row({
        scenario: "7. transfer: client peak RSS, ckpt (verifying) vs curl",
        ckpt: Math.max(med("ckpt", (m) => m.rssMiB), med("ckpt+sha256", (m) => m.rssMiB)),
        anchor: med("curl", (m) => m.rssMiB),
        unit: "MiB",
        target: "ckpt <= 200 MiB",
        meets: () => Math.max(med("ckpt", (m) => m.rssMiB), med("ckpt+sha256", (m) => m.rssMiB)) <= 200,
        note: `aria2c ${fmt(med("aria2c", (m) => m.rssMiB))} MiB; ru_maxrss of the process (all threads)`,
      }),
    ];
  } finally {
    await removeDirs();
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const { runScenarios } = await import("./run.js");
  const argv = process.argv.slice(2);
  const profileAt = argv.indexOf("--profile");
  const profileDir = profileAt === -1 ? undefined : argv[profileAt + 1];
  await runScenarios([["transfer", (o) => runTransferBench({ ...o, profileDir })]], argv.includes("--quick"));
}
