/**
 * CLI start-up. A user pays it on every `ckpt` call, so it is measured as they see it: one
 * process per call, wall time, median of interleaved rounds (each round runs every side once, in
 * turn, so a burst of load on the box hits them all alike).
 *
 * a) `ckpt --help` and `ckpt --version` against `node -e 0` (Node's own start-up): target <= 1.5x.
 * b) `ckpt ls` of a 50-file job on a local `ckpt serve` against `node -e 0` plus `curl` of the
 *    same listing (the floor: starting Node, then the request): target <= 1.5x. Given ids,
 *    `ckpt ls` makes the one request curl makes.
 * c) `ckpt ls` against `curl` of that listing alone, for scale.
 *
 * On a shared, loaded box wall time is mostly waiting for a core, so when `hyperfine` is on the
 * PATH the same commands also run under it and their CPU time (user + system, mean) gets rows
 * of its own.
 *
 * Start-up depends on the Node.js that runs the CLI (Node 22+ caches compiled code on disk, Node
 * 20 does not), so every side runs on this Node and again on each Node named in BENCH_NODES
 * (paths to `node` binaries, separated by ':'), each with rows of its own.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { CKPT_CLI, run, startServer, tempDir } from "./lib.js";
import { fmt, median, row, type Row } from "./report.js";
import { runStandalone } from "./run.js";
import { seedSqlite } from "./seed.js";

const FILES = 50;


export async function runStartupBench(opts: { quick: boolean }): Promise<Row[]> {
  const rounds = Number(process.env.BENCH_STARTUP_ROUNDS) || (opts.quick ? 8 : 30);
  const nodes = [process.execPath, ...(process.env.BENCH_NODES ?? "").split(":").filter(Boolean)];
  const data = tempDir("startup-data");
  try {
    const job = await seedSqlite(data.path, FILES);
    const server = await startServer({ dataDir: data.path });
    try {
      const rows: Row[] = [];
      for (const node of nodes) rows.push(...(await startupRows(node, job, server.baseUrl, rounds, data.path)));
      return rows;
    } finally {
      await server.stop();
    }
  } finally {
    await data.remove();
  }
}

async function startupRows(node: string, job: { apiKey: string; projectId: string; jobId: string }, baseUrl: string, rounds: number, dir: string): Promise<Row[]> {
  const version = execFileSync(node, ["--version"], { encoding: "utf8" }).trim();
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, CKPT_API_URL: baseUrl, CKPT_API_KEY: job.apiKey };
  const listing = `${baseUrl}/v1/training_projects/${job.projectId}/jobs/${job.jobId}/checkpoint_files`;
  const sides: Record<string, [string, string[]]> = {
    "node -e 0": [node, ["-e", "0"]],
    "ckpt --help": [node, [CKPT_CLI, "--help"]],
    "ckpt --version": [node, [CKPT_CLI, "--version"]],
    "ckpt ls": [node, [CKPT_CLI, "ls", "--project", job.projectId, "--job", job.jobId]],
    curl: ["curl", ["-sf", "-o", "/dev/null", "-H", `Authorization: Api-Key ${job.apiKey}`, listing]],
  };
  const names = Object.keys(sides);
  const ms: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));

  // One warm-up round: the first runs pay for cold file caches.
  for (let r = -1; r < rounds; r++)
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + Math.max(r, 0)) % names.length]!;
      const [cmd, args] = sides[name]!;
      const result = await run(cmd, args, { env });
      if (name === "ckpt ls" && result.stdout.split("\n").filter(Boolean).length !== FILES + 1) throw new Error(`ckpt ls listed:\n${result.stdout}`);
      if (r < 0) continue;
      ms[name]!.push(result.ms);
    }
  const m = (name: string) => median(ms[name]!);
  const note = `median of ${rounds} interleaved rounds, one process each; node -e 0 ${fmt(m("node -e 0"))} ms, curl ${fmt(m("curl"))} ms`;
  return [
    row({ scenario: "start-up a. ckpt --help vs node -e 0", ckpt: m("ckpt --help"), anchor: m("node -e 0"), unit: "ms", target: "<= 1.5x", meets: (x) => x <= 1.5, note }),
    row({ scenario: "start-up a. ckpt --version vs node -e 0", ckpt: m("ckpt --version"), anchor: m("node -e 0"), unit: "ms", target: "<= 1.5x", meets: (x) => x <= 1.5, note }),
    row({
      scenario: `start-up b. ckpt ls (${FILES} files, local server) vs node -e 0 + curl of the listing`,
      ckpt: m("ckpt ls"),
      anchor: m("node -e 0") + m("curl"),
      unit: "ms",
      target: "<= 1.5x",
      meets: (x) => x <= 1.5,
      note: `${note}; ckpt ls makes 1 request (ids given), as curl does`,
    }),
    row({ scenario: `start-up c. ckpt ls (${FILES} files, local server) vs curl of the listing`, ckpt: m("ckpt ls"), anchor: m("curl"), unit: "ms", note }),
    ...(await cpuRows(sides, env, rounds, dir)),
  ].map((r) => ({ ...r, scenario: `${r.scenario} (Node ${version})` }));
}

/** CPU time (user + system) of the same commands, measured by hyperfine; none without it. */
async function cpuRows(sides: Record<string, [string, string[]]>, env: NodeJS.ProcessEnv, rounds: number, dir: string): Promise<Row[]> {
  const quote = (word: string) => `'${word.replaceAll("'", "'\\''")}'`;
  const commands = Object.values(sides).map(([cmd, args]) => [cmd, ...args].map(quote).join(" "));
  const out = join(dir, "hyperfine.json");
  const found = await run("hyperfine", ["--version"], { env, check: false }).catch(() => null);
  if (found?.code !== 0) return [];
  await run("hyperfine", ["-N", "-w", "3", "-r", String(rounds), "--export-json", out, ...commands], { env });
  const results = (JSON.parse(readFileSync(out, "utf8")) as { results: { user: number; system: number }[] }).results;
  const names = Object.keys(sides);
  const cpu = (name: string) => {
    const r = results[names.indexOf(name)]!;
    return (r.user + r.system) * 1000;
  };
  const note = `CPU time (user + system), mean of ${rounds} runs by hyperfine; node -e 0 ${fmt(cpu("node -e 0"))} ms, curl ${fmt(cpu("curl"))} ms`;
  const target = { target: "<= 1.5x", meets: (x: number) => x <= 1.5 };
  return [
    row({ scenario: "start-up a. CPU: ckpt --help vs node -e 0", ckpt: cpu("ckpt --help"), anchor: cpu("node -e 0"), unit: "ms CPU", ...target, note }),
    row({ scenario: "start-up a. CPU: ckpt --version vs node -e 0", ckpt: cpu("ckpt --version"), anchor: cpu("node -e 0"), unit: "ms CPU", ...target, note }),
    row({ scenario: `start-up b. CPU: ckpt ls (${FILES} files) vs node -e 0 + curl`, ckpt: cpu("ckpt ls"), anchor: cpu("node -e 0") + cpu("curl"), unit: "ms CPU", ...target, note }),
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await runStandalone([runStartupBench]);
