// `ckpt run` tees the command's output to the job's logs, and truss reads them back with exactly
// the requests it sends (truss/remote/baseten/core.py's BatchedTrainingLogsFetcher and
// truss/cli/logs/base_watcher.py), every answer validated against Baseten's OpenAPI document.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { CLI_PATH } from "../harness/server.js";
import { startProxy } from "../client/support/http-proxy.js";
import { api } from "../helpers/api.js";
import { assertBasetenShape } from "../helpers/spec.js";
import { killIfRunning, startSyncServer, workspace } from "./support.js";

const NS_PER_MS = 1_000_000n;
const HOUR_MS = 3600 * 1000;

/** The training script: deterministic output on both streams, UTF-8, CRLF, and a last line with no newline. */
const OUTPUT_SCRIPT = `
const lines = Number(process.argv[2]);
let out = "";
for (let i = 0; i < lines; i++) {
  out += i % 500 === 7 ? \`ERROR step \${i} failed to converge\\n\` : \`step \${i} loss=\${(1 / (i + 1)).toFixed(6)}\\n\`;
  if (out.length > 8192) { process.stdout.write(out); out = ""; }
}
process.stdout.write(out);
process.stderr.write("WARNING: gradient norm is large\\nplain stderr line\\n");
process.stdout.write("héllo ✓ ünïcödé\\r\\nlast line without newline");
`;

function expectedOutput(lines: number): { stdout: Buffer; stdoutLines: string[]; stderrLines: string[] } {
  const stdoutLines: string[] = [];
  for (let i = 0; i < lines; i++) stdoutLines.push(i % 500 === 7 ? `ERROR step ${i} failed to converge` : `step ${i} loss=${(1 / (i + 1)).toFixed(6)}`);
  const text = stdoutLines.map((l) => `${l}\n`).join("") + "héllo ✓ ünïcödé\r\nlast line without newline";
  return {
    stdout: Buffer.from(text),
    stdoutLines: [...stdoutLines, "héllo ✓ ünïcödé", "last line without newline"],
    stderrLines: ["WARNING: gradient norm is large", "plain stderr line"],
  };
}

/** `ckpt ARGS` to completion, output kept as bytes. */
function runCkpt(t: TestContext, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  t.after(() => killIfRunning(child.pid));
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on("data", (d: Buffer) => stdout.push(d));
  child.stderr.on("data", (d: Buffer) => stderr.push(d));
  child.stdin.end();
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString() }));
  });
}

/** ckpt's own lines on stderr start with "ckpt: "; the rest is the command's. */
const commandStderrLines = (stderr: string) => stderr.split("\n").filter((l) => l !== "" && !l.startsWith("ckpt: "));

describe("ckpt run: the command's output in the job's logs", { concurrency: true }, () => {
  test("terminal output byte for byte; truss pages every line back once, in order; its watcher and the GET form work", async (t) => {
    const { server, env } = await startSyncServer(t);
    const key = env.CKPT_API_KEY!;
    const client = api(server.baseUrl, key);
    const ws = workspace(t);
    const script = join(ws.path, "train.mjs");
    (await import("node:fs")).writeFileSync(script, OUTPUT_SCRIPT);
    const LINES = 2600;
    const run = await runCkpt(t, ["run", "--project", "logs", "--job-name", "teed", "--quiet", "--checkpoint-dir", join(ws.path, "ckpt"), "--", process.execPath, script, String(LINES)], env);
    assert.equal(run.code, 0, run.stderr);
    const expected = expectedOutput(LINES);
    assert.ok(run.stdout.equals(expected.stdout), "the terminal got the command's stdout unchanged, byte for byte");
    assert.deepEqual(commandStderrLines(run.stderr), expected.stderrLines);

    const project = (await client.get("/v1/training_projects")).body.training_projects.find((p: any) => p.name === "logs");
    const jobs = (await client.get(`/v1/training_projects/${project.id}/jobs`)).body.training_jobs;
    const jobPath = `/v1/training_projects/${project.id}/jobs/${jobs[0].id}`;

    // truss train logs (no --tail): get_training_job_logs_with_pagination.
    const job = (await client.get(jobPath)).body;
    let start = Date.parse(job.training_job.created_at);
    let end = start + 2 * HOUR_MS;
    const paged: any[] = [];
    let requests = 0;
    for (;;) {
      const r = await client.post(`${jobPath}/logs`, { start_epoch_millis: start, end_epoch_millis: end, limit: 1000, direction: "asc" });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assertBasetenShape("GetLogsResponseV1", r.body);
      requests++;
      const batch = r.body.logs;
      if (batch.length === 0) break;
      assert.ok(batch.length <= 1000);
      paged.push(...batch);
      start = Number(BigInt(batch[batch.length - 1].timestamp) / NS_PER_MS) + 1;
      end = start + 2 * HOUR_MS;
      assert.ok(requests < 50, "paging ends");
    }
    assert.ok(requests >= 4, `${requests} requests: several pages`);
    const total = expected.stdoutLines.length + expected.stderrLines.length;
    assert.equal(paged.length, total, "every line once");
    const ts = paged.map((l) => BigInt(l.timestamp));
    assert.ok(ts.every((v, i) => i === 0 || ts[i - 1]! <= v), "in time order");
    assert.deepEqual(paged.filter((l) => l.stream === "stdout").map((l) => l.message), expected.stdoutLines);
    assert.deepEqual(paged.filter((l) => l.stream === "stderr").map((l) => l.message), expected.stderrLines);
    assert.ok(paged.every((l) => l.replica === "rank-0" && l.node_rank === 0));
    assert.equal(paged.find((l) => l.message.startsWith("ERROR step 7 "))?.level, "ERROR");
    assert.equal(paged.find((l) => l.message.startsWith("WARNING:"))?.level, "WARNING");
    assert.equal(paged.find((l) => l.message.startsWith("step 1 "))?.level, null);

    // truss train logs --tail: the watcher's first poll sends only end_epoch_millis, then reverses.
    const firstPoll = await client.post(`${jobPath}/logs`, { end_epoch_millis: Date.now() });
    assertBasetenShape("GetLogsResponseV1", firstPoll.body);
    const shown = [...firstPoll.body.logs].reverse();
    assert.equal(shown.length, 500, "Baseten's default limit");
    assert.deepEqual(shown.map((l: any) => l.timestamp), paged.slice(-500).map((l) => l.timestamp), "the newest 500, oldest first once reversed");

    // The GET form, with Baseten's filters as query parameters.
    const errors = await client.get(`${jobPath}/logs?start_epoch_millis=${Date.parse(job.training_job.created_at)}&direction=asc&limit=1000&min_level=WARNING`);
    assert.equal(errors.status, 200);
    assertBasetenShape("GetLogsResponseV1", errors.body);
    assert.deepEqual(
      errors.body.logs.map((l: any) => l.message).sort(),
      [...expected.stdoutLines.filter((l) => l.startsWith("ERROR")), "WARNING: gradient norm is large"].sort(),
    );
    const window = await client.get(`${jobPath}/logs?start_epoch_millis=0&end_epoch_millis=1000`);
    assert.deepEqual(window.body.logs, [], "nothing before the job");

    // Bad filters are 400s with a message; another organisation's job is a 404.
    for (const bad of ["limit=0", "limit=1001", "direction=up", "min_level=LOUD", `start_epoch_millis=0&end_epoch_millis=${8 * 24 * HOUR_MS}`, "start_epoch_millis=5&end_epoch_millis=4"]) {
      const r = await client.get(`${jobPath}/logs?${bad}`);
      assert.equal(r.status, 400, bad);
      assert.equal(typeof r.body.message, "string");
    }
    for (const bad of [{ limit: 0 }, { direction: "up" }, { start_epoch_millis: "yesterday" }]) {
      const r = await client.post(`${jobPath}/logs`, bad);
      assert.equal(r.status, 400, JSON.stringify(bad));
    }
    const stranger = api(server.baseUrl, await server.createKey("someone-else"));
    assert.equal((await stranger.get(`${jobPath}/logs`)).status, 404);
    assert.equal((await stranger.post(`${jobPath}/logs/batch`, { node_rank: 0, lines: [] })).status, 404);
    const refused = await client.post(`${jobPath}/logs/batch`, { node_rank: 0, lines: [{ timestamp: "soon", stream: "stdout", message: "x" }] });
    assert.equal(refused.status, 400);
  });

  for (const fault of ["stalls (accepts, never answers)", "answers 503"] as const) {
    test(`a log server that ${fault}: the command runs to the end, its output unchanged, the lost lines counted`, async (t) => {
      const { server, env } = await startSyncServer(t);
      const proxy = await startProxy();
      t.after(() => proxy.close());
      proxy.setTarget(server.baseUrl, { origin: server.blobOrigin, pathPrefix: server.blobPathPrefix });
      let batches = 0;
      proxy.setRule((request) => {
        if (!request.path.endsWith("/logs/batch")) return { kind: "forward" };
        batches++;
        return fault.startsWith("stalls") ? new Promise(() => {}) : { kind: "respond", status: 503, body: '{"message":"unavailable"}' };
      });
      const ws = workspace(t);
      const script = join(ws.path, "train.mjs");
      (await import("node:fs")).writeFileSync(script, OUTPUT_SCRIPT);
      const LINES = 40_000; // ~1 MiB: far more than the 64 KiB the shipper may hold
      const run = await runCkpt(
        t,
        ["run", "--project", "logs", "--job-name", "down", "--quiet", "--checkpoint-dir", join(ws.path, "ckpt"), "--log-buffer", "64KiB", "--log-flush-timeout", "1", "--", process.execPath, script, String(LINES)],
        { ...env, CKPT_API_URL: proxy.url },
      );
      assert.equal(run.code, 0, run.stderr);
      const expected = expectedOutput(LINES);
      assert.ok(run.stdout.equals(expected.stdout), "stdout unchanged, byte for byte");
      assert.deepEqual(commandStderrLines(run.stderr), expected.stderrLines);
      const warning = /ckpt: warning: ([0-9]+) line\(s\) of the command's output were not sent to the job's logs/.exec(run.stderr);
      assert.ok(warning, run.stderr);
      assert.ok(Number(warning[1]) >= LINES - 2000, `${warning[1]} lines counted as not sent`);
      assert.ok(batches >= 1, "the shipper did try");

      const client = api(server.baseUrl, env.CKPT_API_KEY!);
      const project = (await client.get("/v1/training_projects")).body.training_projects.find((p: any) => p.name === "logs");
      const job = (await client.get(`/v1/training_projects/${project.id}/jobs`)).body.training_jobs[0];
      assert.equal(job.current_status, "TRAINING_JOB_COMPLETED", "the job's outcome is still reported");
    });
  }

  test("a log server that fails for a while and then recovers: the logs say where lines are missing, and nothing is lost uncounted", async (t) => {
    const { server, env } = await startSyncServer(t);
    const proxy = await startProxy();
    t.after(() => proxy.close());
    proxy.setTarget(server.baseUrl, { origin: server.blobOrigin, pathPrefix: server.blobPathPrefix });
    proxy.setRule((request) =>
      request.path.endsWith("/logs/batch") && request.nth <= 3 ? { kind: "respond", status: 503, body: '{"message":"busy"}' } : { kind: "forward" },
    );
    const ws = workspace(t);
    const script = join(ws.path, "train.mjs");
    (await import("node:fs")).writeFileSync(script, OUTPUT_SCRIPT);
    const LINES = 40_000;
    const run = await runCkpt(
      t,
      ["run", "--project", "logs", "--job-name", "flaky", "--quiet", "--checkpoint-dir", join(ws.path, "ckpt"), "--log-buffer", "64KiB", "--log-flush-timeout", "30", "--", process.execPath, script, String(LINES)],
      { ...env, CKPT_API_URL: proxy.url },
    );
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.stdout.equals(expectedOutput(LINES).stdout), "stdout unchanged, byte for byte");
    const warning = /ckpt: warning: ([0-9]+) line\(s\) of the command's output were not sent to the job's logs/.exec(run.stderr);
    assert.ok(warning, run.stderr);
    const notSent = Number(warning[1]);

    const client = api(server.baseUrl, env.CKPT_API_KEY!);
    const project = (await client.get("/v1/training_projects")).body.training_projects.find((p: any) => p.name === "logs");
    const job = (await client.get(`/v1/training_projects/${project.id}/jobs`)).body.training_jobs[0];
    const jobPath = `/v1/training_projects/${project.id}/jobs/${job.id}`;
    const stored: any[] = [];
    let start = Date.parse(job.created_at);
    for (;;) {
      const r = await client.get(`${jobPath}/logs?start_epoch_millis=${start}&end_epoch_millis=${start + 2 * HOUR_MS}&direction=asc&limit=1000`);
      assertBasetenShape("GetLogsResponseV1", r.body);
      if (r.body.logs.length === 0) break;
      stored.push(...r.body.logs);
      start = Number(BigInt(r.body.logs[r.body.logs.length - 1].timestamp) / NS_PER_MS) + 1;
    }
    const notes = stored.filter((l) => l.message.startsWith("[ckpt] "));
    const noted = notes.reduce((n, l) => n + Number(/^\[ckpt\] ([0-9]+) line/.exec(l.message)![1]), 0);
    assert.ok(notes.length >= 1 && noted > 0, "the logs mark where lines are missing");
    assert.equal(noted, notSent, "every line not sent is noted in the logs (the server recovered in time)");
    const total = expectedOutput(LINES).stdoutLines.length + 2;
    assert.equal(stored.length - notes.length + notSent, total, "each line is stored or counted as not sent");
  });
});
