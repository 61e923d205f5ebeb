import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { JOURNAL_NAME } from "../../src/client/sync/journal.js";
import { CLI_PATH } from "../harness/server.js";
import {
  expectedDigests,
  FAST,
  isRunning,
  KiB,
  killIfRunning,
  listedDigests,
  listFiles,
  startCkpt,
  startSyncServer,
  waitFor,
  workspace,
  type PlannedFile,
} from "./support.js";

/** The files one rank writes: its shard, and a config every rank writes under the same name. */
const rankFiles = (rank: number): PlannedFile[] => [
  { name: `checkpoint-1/shard-${rank}.bin`, chunks: 4, chunkSize: (8 + rank) * KiB },
  { name: "checkpoint-1/config.json", chunks: 1, chunkSize: 100 + rank },
];

describe("ranks, resuming, and ckpt sync", { concurrency: true }, () => {
  test("two ranks on one machine fill one job: rank 0's launcher hands CKPT_JOB_ID to rank 1", async (t) => {
    const { client, env } = await startSyncServer(t);
    const ws = workspace(t);
    const train = ws.script("train.mjs", `for (const file of JSON.parse(process.env.FILES_BY_RANK)[process.env.BT_NODE_RANK]) await writeSlowly(file, 10);`);
    // Rank 0's command: trains as rank 0 and starts rank 1 under its own `ckpt run`, which finds
    // the job in CKPT_JOB_ID (and the server in CKPT_API_URL) exported by rank 0.
    const launcher = ws.script(
      "launcher.mjs",
      `import { spawn } from "node:child_process";
       const ended = (child) => new Promise((resolve) => child.on("exit", (code) => resolve(code)));
       const rank1 = spawn(process.execPath, [${JSON.stringify(CLI_PATH)}, "run", "--project", "two-ranks", "--node-rank", "1",
         "--checkpoint-dir", ${JSON.stringify(join(ws.path, "rank1"))}, ${FAST.map((a) => JSON.stringify(a)).join(", ")},
         "--", process.execPath, ${JSON.stringify(train)}], { stdio: "inherit" });
       const rank0 = spawn(process.execPath, [${JSON.stringify(train)}], { stdio: "inherit" });
       const codes = await Promise.all([ended(rank0), ended(rank1)]);
       process.exit(Math.max(...codes));`,
    );
    const args = ["run", "--project", "two-ranks", "--node-rank", "0", "--checkpoint-dir", join(ws.path, "rank0"), ...FAST];
    const run = startCkpt(t, [...args, "--", process.execPath, launcher], { ...env, FILES_BY_RANK: JSON.stringify([rankFiles(0), rankFiles(1)]) });
    const { code, stderr } = await run.done;
    assert.equal(code, 0, stderr);

    const project = (await client.listProjects()).find((p) => p.name === "two-ranks")!;
    const jobs = await client.listJobs(project.id);
    assert.equal(jobs.length, 1, "rank 1 joined rank 0's job instead of creating one");
    assert.equal(jobs[0]!.current_status, "TRAINING_JOB_COMPLETED");
    assert.deepEqual(await listedDigests(client, project.id, jobs[0]!.id, 0), expectedDigests(rankFiles(0)));
    assert.deepEqual(await listedDigests(client, project.id, jobs[0]!.id, 1), expectedDigests(rankFiles(1)));
  });

  test("kill -9 of ckpt run mid-upload, then ckpt sync finishes the job's files and skips what was done", async (t) => {
    const { client, env } = await startSyncServer(t);
    const ws = workspace(t);
    const dir = join(ws.path, "out");
    const release = join(ws.path, "release");
    const pidFile = join(ws.path, "train.pid");
    const files: PlannedFile[] = [1, 2, 3].flatMap((step) => [
      { name: `checkpoint-${step}/model.bin`, chunks: 4, chunkSize: 64 * KiB },
      { name: `checkpoint-${step}/optim.bin`, chunks: 2, chunkSize: 64 * KiB },
    ]);
    const train = ws.script(
      "train.mjs",
      `writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));
       for (const file of ${JSON.stringify(files)}) await writeSlowly(file, 0);
       await waitForFile(${JSON.stringify(release)}, 30000);`,
    );
    // A slow link, so that the kill lands while uploads are in flight.
    const args = ["run", "--project", "crashy", "--checkpoint-dir", dir, "--max-upload-rate", "96KiB", "--concurrency", "2", ...FAST];
    const run = startCkpt(t, [...args, "--", process.execPath, train], env);
    t.after(() => killIfRunning(existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8")) : undefined));

    const journal = join(dir, JOURNAL_NAME);
    const journalEntries = () => (existsSync(journal) ? readFileSync(journal, "utf8").trim().split("\n").length - 1 : 0);
    await waitFor("a first upload recorded in the journal", () => journalEntries() >= 1, 30_000);
    run.child.kill("SIGKILL");
    await run.exited; // not its output's end: the orphaned training script still holds the pipes
    const project = (await client.listProjects()).find((p) => p.name === "crashy")!;
    const [job] = await client.listJobs(project.id);
    const listedAtKill = (await listFiles(client, project.id, job!.id)).length;
    assert.ok(listedAtKill < files.length, "the kill came after every upload: the test proves nothing");
    writeFileSync(release, "");
    await waitFor("the orphaned training script to exit", () => !isRunning(Number(readFileSync(pidFile, "utf8"))));

    const sync = startCkpt(t, ["sync", "--project", "crashy", "--job", job!.id, "--node-rank", "0", dir, ...FAST], env);
    const { code, stderr } = await sync.done;
    assert.equal(code, 0, stderr);
    const [, uploaded, resumed] = /(\d+) uploaded .*, (\d+) already synced by an earlier run, 0 not synced/.exec(stderr) ?? [];
    assert.ok(Number(resumed) >= 1, `nothing was resumed from the journal:\n${stderr}`);
    assert.equal(Number(uploaded) + Number(resumed), files.length, stderr);
    assert.deepEqual(await listedDigests(client, project.id, job!.id), expectedDigests(files));
    assert.equal((await client.getJob(project.id, job!.id)).checkpoint_sync_status, "COMPLETED");
  });

  test("ckpt sync --watch uploads files as they complete, and finishes them on SIGINT", async (t) => {
    const { client, env } = await startSyncServer(t);
    const ws = workspace(t);
    const dir = join(ws.path, "watched");
    mkdirSync(dir);
    const project = await client.upsertProject("sidecar");
    const job = await client.createJob(project.id, {});
    const sidecar = startCkpt(t, ["sync", "--project", "sidecar", "--node-rank", "3", "--watch", dir, ...FAST], { ...env, CKPT_JOB_ID: job.id });

    mkdirSync(join(dir, "checkpoint-1"));
    writeFileSync(join(dir, "checkpoint-1/a.bin"), Buffer.alloc(3 * KiB, 1));
    await waitFor("the first file to be listed", async () => (await listFiles(client, project.id, job.id)).length === 1);
    writeFileSync(join(dir, "checkpoint-1/b.bin"), Buffer.alloc(2 * KiB, 2));
    sidecar.child.kill("SIGINT");

    const { code, stderr } = await sidecar.done;
    assert.equal(code, 0, stderr);
    const listed = await listFiles(client, project.id, job.id);
    assert.deepEqual(listed.map((f) => [f.node_rank, f.relative_file_name, f.size_bytes]).sort(), [
      [3, "checkpoint-1/a.bin", 3 * KiB],
      [3, "checkpoint-1/b.bin", 2 * KiB],
    ]);
    assert.equal((await client.getJob(project.id, job.id)).checkpoint_sync_status, null, "only rank 0 reports the sync status");
  });

  test("ckpt sync refuses to guess the job, and reports a missing folder", async (t) => {
    const { env } = await startSyncServer(t);
    const ws = workspace(t);
    const noJob = await startCkpt(t, ["sync", "--project", "p", ws.path], env).done;
    assert.equal(noJob.code, 1);
    assert.equal(noJob.stderr, "ckpt: which job? pass --job <id> or set CKPT_JOB_ID\n");
    const noDir = await startCkpt(t, ["sync", "--project", "p", "--job", "j", join(ws.path, "missing")], env).done;
    assert.equal(noDir.code, 1);
    assert.match(noDir.stderr, /is not a directory\n$/);
  });
});
