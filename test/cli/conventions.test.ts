import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { COMMANDS, nameOf } from "../../src/cli/commands.js";
import { CLI_PATH, runCli, startTestServer, type TestServer } from "../harness/server.js";
import { bytes, MiB, putFile, seedJob, tempDir, type SeededJob } from "../client/support/fixtures.js";
import { startProxiedServer } from "../client/support/proxied-server.js";
import { safetensorsFile } from "../helpers/safetensors.js";

/**
 * The conventions every command shares, checked with the real CLI against a real server: `-o
 * table|json|jsonl` on each listing, `--quiet`, `--job` defaulting to the latest job where a
 * command only reads, and Ctrl-C/SIGTERM.
 */
let server: TestServer;
let seeded: SeededJob;
let olderJob: string;
const out = tempDir("ckpt-conventions-");

before(async () => {
  server = await startTestServer();
  seeded = await seedJob(server, [], { projectName: "conventions" });
  // The seeded job is the older one: the latest job (created next) holds the files.
  olderJob = seeded.jobId;
  await putFile(server, seeded.apiKey, seeded.projectId, olderJob, { rank: 0, name: "checkpoint-1/old.bin", content: bytes(10) });
  const latest = await seeded.client.createJob(seeded.projectId, {});
  seeded = { ...seeded, jobId: latest.id };
  for (const step of [1, 2])
    await putFile(server, seeded.apiKey, seeded.projectId, latest.id, {
      rank: 0,
      name: `checkpoint-${step}/model.safetensors`,
      content: safetensorsFile([{ name: "w", dtype: "F32", shape: step === 1 ? [2, 2] : [2, 4] }]),
    });
  for (const step of [1, 2]) assert.equal((await remote("checkpoints", "complete", `checkpoint-${step}`, "--project", "conventions")).code, 0);
  const set = await remote("alias", "set", "prod", "--project", "conventions", "--checkpoint", "checkpoint-2");
  assert.equal(set.code, 0, set.stderr);
  assert.equal((await admin("create-key", "--org", "audited")).code, 0, "an audit entry to list");
  const download = await remote("download", "--project", "conventions", "--out", join(out.path, "verified"), "--quiet");
  assert.equal(download.code, 0, download.stderr);
});
after(async () => {
  await server.stop();
  out.remove();
});

const remote = (...args: string[]) => runCli(args, { env: { CKPT_API_URL: server.baseUrl, CKPT_API_KEY: seeded.apiKey } });
const admin = (...args: string[]) => runCli(["admin", ...args, "--data-dir", server.dataDir], { env: server.stores.env });

interface Listing {
  args: () => string[];
  run: (...args: string[]) => ReturnType<typeof runCli>;
  /** Whether the listing has rows here (so `-o jsonl` must print at least one line). */
  rows: boolean;
}

const project = ["--project", "conventions"];
const LISTINGS: Record<string, Listing> = {
  projects: { args: () => ["projects"], run: remote, rows: true },
  jobs: { args: () => ["jobs", ...project], run: remote, rows: true },
  checkpoints: { args: () => ["checkpoints", ...project], run: remote, rows: true },
  ls: { args: () => ["ls", ...project], run: remote, rows: true },
  inspect: { args: () => ["inspect", ...project], run: remote, rows: true },
  diff: { args: () => ["diff", "checkpoint-1", "checkpoint-2", ...project], run: remote, rows: true },
  "alias ls": { args: () => ["alias", "ls", ...project], run: remote, rows: true },
  "alias history": { args: () => ["alias", "history", "prod", ...project], run: remote, rows: true },
  "retention plan": { args: () => ["retention", "plan", ...project], run: remote, rows: false },
  "retention show": { args: () => ["retention", "show", ...project], run: remote, rows: true },
  "download --dry-run": { args: () => ["download", "--dry-run", "--out", join(out.path, "dry"), ...project], run: remote, rows: true },
  verify: { args: () => ["verify", join(out.path, "verified")], run: remote, rows: false },
  "admin list-keys": { args: () => ["list-keys"], run: admin, rows: true },
  "admin audit": { args: () => ["audit"], run: admin, rows: true },
  "admin gc --dry-run": { args: () => ["gc", "--dry-run"], run: admin, rows: false },
};
/** Commands that are not listings of many things: `-o json` but no `-o jsonl` expected. */
const SINGLE_DOCUMENT = new Set(["verify"]);
/** Exit status 1 means "they differ" for diff. */
const expectedCode = (name: string) => (name === "diff" ? 1 : 0);

for (const [name, listing] of Object.entries(LISTINGS)) {
  test(`${name}: -o json is one JSON document, -o jsonl one object per line, -o table the default, a bad -o an error; --quiet: nothing on stderr`, async () => {
    const json = await listing.run(...listing.args(), "-o", "json");
    assert.equal(json.code, expectedCode(name), json.stderr);
    assert.equal(json.stderr, "", "a successful listing prints nothing on stderr");
    assert.doesNotThrow(() => JSON.parse(json.stdout), `ckpt ${name} -o json: ${json.stdout}`);

    if (!SINGLE_DOCUMENT.has(name)) {
      const jsonl = await listing.run(...listing.args(), "-o", "jsonl");
      assert.equal(jsonl.code, expectedCode(name), jsonl.stderr);
      const lines = jsonl.stdout.split("\n").filter(Boolean);
      if (listing.rows) assert.ok(lines.length > 0, `ckpt ${name} -o jsonl printed nothing`);
      for (const line of lines) {
        const parsed = JSON.parse(line) as unknown;
        assert.equal(typeof parsed, "object", line);
        assert.ok(!Array.isArray(parsed), `a jsonl line is one object, not a list: ${line}`);
      }
    }

    const table = await listing.run(...listing.args(), "-o", "table", "--quiet");
    assert.equal(table.code, expectedCode(name), table.stderr);
    assert.equal(table.stderr, "", `ckpt ${name} --quiet printed on stderr`);
    assert.throws(() => JSON.parse(table.stdout), "a table is not JSON");
    assert.equal((await listing.run(...listing.args())).stdout, table.stdout, "table is the default");

    const bad = await listing.run(...listing.args(), "-o", "yaml");
    assert.notEqual(bad.code, 0);
    assert.equal(bad.stdout, "");
    assert.match(bad.stderr, /yaml/);
  });
}

test("old spellings stay: download --json is -o jsonl, verify --json is -o json, gc -o text is -o table", async () => {
  const events = await remote("download", "--dry-run", "--json", "--out", join(out.path, "dry"), ...project);
  assert.equal(events.code, 0, events.stderr);
  const lines = events.stdout.trim().split("\n").map((line) => JSON.parse(line) as { type: string });
  assert.equal(lines.at(-1)!.type, "summary");
  const verify = await remote("verify", join(out.path, "verified"), "--json");
  assert.equal((JSON.parse(verify.stdout) as { ok: number }).ok, 2);
  assert.equal((await admin("gc", "--dry-run", "-o", "text")).stdout, (await admin("gc", "--dry-run")).stdout);
});

test("--quiet silences the informational lines of commands that have some, and only those", async () => {
  const loud = await remote("download", ...project, "--out", join(out.path, "loud"));
  assert.equal(loud.code, 0, loud.stderr);
  assert.match(loud.stderr, /downloaded 2 files/);
  const quiet = await remote("download", ...project, "--out", join(out.path, "quiet"), "--quiet");
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.equal(quiet.stdout + quiet.stderr, "");

  const created = await admin("create-key", "--org", "quiet-org");
  assert.match(created.stderr, /created key/);
  const silent = await admin("create-key", "--org", "quiet-org", "-q");
  assert.equal(silent.code, 0, silent.stderr);
  assert.equal(silent.stderr, "");
  assert.match(silent.stdout, /^ckpt_/);

  // Errors are still printed.
  const failing = await remote("ls", "--project", "no-such-project", "--quiet");
  assert.equal(failing.code, 1);
  assert.match(failing.stderr, /^ckpt: .*no-such-project/);
});

test("reading commands default --job to the project's latest job", async () => {
  const same = async (args: string[]) => {
    const implicit = await remote(...args, ...project, "-o", "json");
    const explicit = await remote(...args, ...project, "--job", seeded.jobId, "-o", "json");
    const older = await remote(...args, ...project, "--job", olderJob, "-o", "json");
    assert.equal(implicit.code, 0, implicit.stderr);
    assert.equal(implicit.stdout, explicit.stdout, `ckpt ${args.join(" ")}`);
    assert.notEqual(implicit.stdout, older.stdout, `ckpt ${args.join(" ")}: the older job must list something else`);
  };
  await same(["ls"]);
  await same(["checkpoints"]);
  const inspected = await remote("inspect", ...project, "-o", "json");
  assert.equal((JSON.parse(inspected.stdout) as { training_job_id: string }).training_job_id, seeded.jobId);
  const planned = await remote("download", "--dry-run", ...project, "-o", "json", "--out", join(out.path, "dry"));
  assert.deepEqual((JSON.parse(planned.stdout) as { files: { relativeName?: string; localName: string }[] }).files.map((f) => f.localName).sort(), [
    "rank-0/checkpoint-1/model.safetensors",
    "rank-0/checkpoint-2/model.safetensors",
  ]);
});

/** Resolves once `text` has appeared on the child's stderr; rejects if it exits first. */
function stderrShows(child: ChildProcess, text: string | RegExp): Promise<string> {
  let seen = "";
  return new Promise((resolve, reject) => {
    const check = (chunk: Buffer) => {
      seen += chunk;
      if (typeof text === "string" ? seen.includes(text) : text.test(seen)) resolve(seen);
    };
    child.stderr!.on("data", check);
    child.on("close", () => reject(new Error(`exited before printing ${text}; stderr: ${seen}`)));
  });
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
}

test("Ctrl-C: the first lets in-flight requests end and starts nothing new (exit 130); a second stops at once; SIGTERM exits 143 with resume state", async (t) => {
  const { server: proxied, proxy } = await startProxiedServer(t);
  const job = await seedJob(proxied, [{ rank: 0, name: "model.safetensors", content: bytes(4 * MiB) }]);
  const dest = tempDir();
  t.after(dest.remove);
  const env = { PATH: process.env.PATH, CKPT_API_URL: proxy.url, CKPT_API_KEY: job.apiKey };
  const args = [CLI_PATH, "download", "--project", job.projectName, "--out", dest.path, "--part-size", "1MiB", "--parts-per-file", "1", "--concurrency", "1"];

  // The job lookup is held at the proxy: the first Ctrl-C arrives while it is in flight.
  let release = (): void => {};
  let seenLookup = (): void => {};
  const lookupSeen = new Promise<void>((resolve) => (seenLookup = resolve));
  proxy.setRule(async (request) => {
    if (request.path.endsWith("/jobs")) {
      seenLookup();
      await new Promise<void>((resolve) => (release = resolve));
    }
    return { kind: "forward" };
  });
  const held = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const heldExit = exitOf(held);
  await lookupSeen;
  const finishing = stderrShows(held, /Ctrl-C again to stop now/);
  held.kill("SIGINT");
  await finishing;
  assert.equal(held.exitCode, null, "the first Ctrl-C waits for the request in flight");
  release();
  const first = await heldExit;
  assert.equal(first.code, 130);
  assert.equal(proxy.requests().filter((r) => proxy.isBlob(r.path)).length, 0, "no download started after Ctrl-C");

  const again = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const againExit = exitOf(again);
  await lookupSeen;
  const shown = stderrShows(again, /Ctrl-C again/);
  // Wait for the new run's lookup to be held before interrupting it.
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (proxy.requests().filter((r) => r.path.endsWith("/jobs")).length >= 2) clearInterval(poll), resolve();
    }, 20);
  });
  again.kill("SIGINT");
  await shown;
  again.kill("SIGINT");
  assert.deepEqual(await againExit, { code: 130, signal: null }, "the second Ctrl-C exits although the request is still held");
  release();

  // SIGTERM in the middle of the bytes: exit 143, and the next run resumes what was done.
  proxy.setRule(() => ({ kind: "forward" }));
  proxy.resetStats();
  proxy.stallAfterBlobBytes(2 * MiB + 1000);
  const running = spawn(process.execPath, [...args, "-o", "jsonl"], { env, stdio: ["ignore", "pipe", "pipe"] });
  const runningExit = exitOf(running);
  let events = "";
  await new Promise<void>((resolve) => {
    running.stdout!.on("data", (chunk: Buffer) => {
      events += chunk;
      if (events.split('"type":"part-done"').length - 1 >= 2) resolve();
    });
  });
  running.kill("SIGTERM");
  const terminated = await runningExit;
  assert.equal(terminated.code, 143);
  proxy.stallAfterBlobBytes(null);
  proxy.resetStats();
  const resumed = await runCli(args.slice(1), { env });
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.ok(proxy.blobBytes() <= 2 * MiB, `the resumed run fetched ${proxy.blobBytes()} bytes of a 4 MiB file with 2 MiB done`);
});

/**
 * The module URLs a CLI run loads: the CommonJS files (the bundled CLI, most packages) from
 * require.cache as the process exits, and the ES modules (the compiled tree, were any loaded) from
 * a load hook.
 */
async function modulesLoaded(args: string[]): Promise<string[]> {
  const preload = join(out.path, "loaded.cjs");
  writeFileSync(
    preload,
    `process.on("exit", () => require("node:fs").writeSync(2, Object.keys(require.cache).map((f) => "LOADED " + require("node:url").pathToFileURL(f).href + "\\n").join("")));`,
  );
  // Off the main thread (register(), Node 20), process.stderr.write is handed to the main thread
  // and lost when the CLI exits at once (a typo's help): the hook writes to fd 2 itself.
  const hook = `import { writeSync } from "node:fs"; export async function load(url, context, next) { if (context.format === "module") writeSync(2, "LOADED " + url + "\\n"); return next(url, context); }`;
  // In-thread hooks where Node has them (22.15+, 24); they see require() too, hence the format test.
  const inThread = `{ load(url, context, next) { const loaded = next(url, context); if (loaded.format === "module") process.stderr.write("LOADED " + url + "\\n"); return loaded; } }`;
  const register =
    `import * as m from "node:module"; ` +
    `if (m.registerHooks) m.registerHooks(${inThread}); else m.register(${JSON.stringify("data:text/javascript," + encodeURIComponent(hook))});`;
  const child = spawn(process.execPath, ["--require", preload, "--import", "data:text/javascript," + encodeURIComponent(register), CLI_PATH, ...args], {
    env: { PATH: process.env.PATH, CKPT_API_URL: "http://127.0.0.1:9", CKPT_API_KEY: "unused" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  await exitOf(child);
  return [...new Set([...stderr.matchAll(/^LOADED (.*)$/gm)].map((m) => m[1]!))];
}

test("start-up: top-level help loads no command file; a command loads its own file and not the others' (nor the server's packages)", async () => {
  // The shipped CLI (dist/cli): the launcher, then one file per command (scripts/bundle-cli.mjs).
  const cliFile = (url: string) => /\/dist\/cli\/((?:commands\/)?[a-z-]+)\.c?js$/.exec(url)?.[1];
  const help = await modulesLoaded(["--help"]);
  assert.deepEqual(help.map(cliFile).filter(Boolean), ["ckpt"]);

  const ls = await modulesLoaded(["ls", "--project", "p"]);
  assert.deepEqual(ls.map(cliFile).filter(Boolean), ["ckpt", "commands/ls"]);
  assert.ok(!ls.some((url) => /\/node_modules\/commander\//.test(url)), "commander is inside the command's file");
  assert.ok(!ls.some((url) => /node_modules\/(fastify|pino|@aws-sdk|pg|better-sqlite3)\//.test(url) || /\/dist\/src\//.test(url)), `ckpt ls loaded the server side or the compiled tree: ${ls.join(" ")}`);

  const typo = await modulesLoaded(["lss"]);
  assert.deepEqual(typo.map(cliFile).filter(Boolean), ["ckpt", "commands/help"]);
});

test("the bundled CLI has a file for every command in the table, and each runs its command (its own help, from commander)", async () => {
  const names = COMMANDS.map(nameOf);
  const shipped = readdirSync(join(dirname(CLI_PATH), "commands")).map((f) => f.replace(/\.c?js$/, ""));
  assert.deepEqual(shipped.sort(), [...names, "help", "hash-worker"].sort());
  for (const name of names) {
    const help = await runCli([name, "--help"]);
    assert.equal(help.code, 0, `ckpt ${name} --help: ${help.stderr}`);
    assert.match(help.stdout, new RegExp(`^Usage: ckpt ${name} `), `ckpt ${name} --help printed:\n${help.stdout}`);
  }
});

test("the listings' own HTTP client: a server that is not there is one line on stderr naming the cause, exit 1", async () => {
  const gone = await runCli(["ls", "--project", "p"], { env: { CKPT_API_URL: "http://127.0.0.1:9", CKPT_API_KEY: "k" } });
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /^ckpt: GET \/v1\/training_projects: fetch failed \(ECONNREFUSED\)\n$/);
});

test("ckpt --help, answered before commander loads, is commander's own help (ckpt with no command prints that on stderr); --version is package.json's", async () => {
  const help = await runCli(["--help"]);
  assert.equal(help.code, 0);
  const bare = await runCli([]);
  assert.equal(bare.code, 1);
  assert.equal(help.stdout, bare.stderr);
  for (const name of ["ls", "download", "admin", "run", "sync", "push", "retention"]) assert.match(help.stdout, new RegExp(`\\n  ${name}\\b`));
  const version = await runCli(["--version"]);
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
  assert.equal(version.stdout, `${pkg.version}\n`);
  assert.equal((await runCli(["-V"])).stdout, version.stdout);
});

test("every remote command talks over node:http: ls, push, sync, run, download and their uploads never load Node's fetch (undici)", async () => {
  // Node's fetch is its bundled undici (on Node 20, one a FIN under backpressure can crash), loaded
  // on first use; process.moduleLoadList names every built-in a process loaded.
  const preload = join(out.path, "builtins.cjs");
  writeFileSync(preload, `process.on("exit", () => require("node:fs").writeSync(2, "BUILTINS " + process.moduleLoadList.join(",") + "\\n"));`);
  const folder = join(out.path, "undici-free");
  mkdirSync(join(folder, "checkpoint-9"), { recursive: true });
  writeFileSync(join(folder, "checkpoint-9", "weights.bin"), bytes(3 * MiB));
  const job = ["--project", "conventions", "--job", seeded.jobId];
  const commands = [
    ["ls", ...job],
    ["push", ...job, "--node-rank", "3", folder],
    ["sync", ...job, "--node-rank", "4", folder],
    ["run", ...job, "--node-rank", "5", "--checkpoint-dir", folder, "--", process.execPath, "-e", "console.log('training')"],
    ["download", ...job, "--out", join(out.path, "undici-free-download"), "--quiet"],
  ];
  for (const args of commands) {
    const result = await runCli(args, { env: { CKPT_API_URL: server.baseUrl, CKPT_API_KEY: seeded.apiKey }, nodeArgs: ["--require", preload] });
    assert.equal(result.code, 0, `ckpt ${args.join(" ")}: ${result.stderr}`);
    const builtins = /^BUILTINS (.*)$/m.exec(result.stderr)?.[1]?.split(",") ?? [];
    assert.ok(builtins.length > 0, `ckpt ${args[0]}: no list of built-ins (${result.stderr})`);
    assert.deepEqual(builtins.filter((m) => /undici/.test(m)), [], `ckpt ${args[0]} loaded Node's fetch`);
  }
});
