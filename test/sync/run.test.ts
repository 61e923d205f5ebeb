import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import type { CkptClient } from "../../src/client/api.js";
import {
  contentOf,
  download,
  expectedDigests,
  FAST,
  KiB,
  listedDigests,
  listFiles,
  sha256,
  startCkpt,
  startSyncServer,
  waitFor,
  workspace,
  type PlannedFile,
} from "./support.js";

/** Three checkpoints of several files each, as a trainer writes them: big shards in many chunks. */
const CHECKPOINTS: PlannedFile[][] = [1, 2, 3].map((step) => [
  { name: `checkpoint-${step}/model.safetensors`, chunks: 8, chunkSize: 64 * KiB },
  { name: `checkpoint-${step}/optimizer.pt`, chunks: 6, chunkSize: 32 * KiB },
  { name: `checkpoint-${step}/config.json`, chunks: 1, chunkSize: 700 },
]);
/** Rewritten after every checkpoint: each complete version is legitimate, nothing in between is. */
const PROGRESS_VERSIONS: PlannedFile[] = [1, 2, 3].map((step) => ({ name: "progress.json", chunks: step, chunkSize: 300 }));

async function projectByName(client: CkptClient, name: string) {
  return (await client.listProjects()).find((p) => p.name === name);
}

describe("ckpt run", { concurrency: true }, () => {
  test("uploads three slowly written checkpoints as they complete; never lists a partial version; job COMPLETED", async (t) => {
    const { client, env } = await startSyncServer(t);
    const ws = workspace(t);
    const dir = join(ws.path, "checkpoints");
    const train = ws.script(
      "train.mjs",
      `const checkpoints = ${JSON.stringify(CHECKPOINTS)};
       const progress = ${JSON.stringify(PROGRESS_VERSIONS)};
       for (let i = 0; i < checkpoints.length; i++) {
         for (const file of checkpoints[i]) await writeSlowly(file, 25);
         await writeSlowly(progress[i], 0);
       }`,
    );
    const run = startCkpt(t, ["run", "--project", "llama-sft", "--job-name", "sft-1", "--checkpoint-dir", dir, ...FAST, "--", process.execPath, train], env);

    // Poll the endpoint while training runs: every listed version must be a complete one.
    const allowed = new Map<string, Set<string>>();
    for (const file of [...CHECKPOINTS.flat(), ...PROGRESS_VERSIONS]) {
      const digests = allowed.get(file.name) ?? new Set<string>();
      allowed.set(file.name, digests.add(sha256(contentOf(file))));
    }
    const violations: string[] = [];
    const syncStatuses = new Set<string>();
    const checked = new Set<string>();
    let exited = false;
    void run.done.then(() => (exited = true));
    const project = await waitFor("the project", () => projectByName(client, "llama-sft"));
    const job = await waitFor("the job", async () => (await client.listJobs(project.id))[0]);
    while (!exited) {
      syncStatuses.add(String((await client.getJob(project.id, job.id)).checkpoint_sync_status));
      for (const file of await listFiles(client, project.id, job.id)) {
        const version = `${file.relative_file_name} ${file.size_bytes} ${file.last_modified}`;
        if (checked.has(version)) continue;
        checked.add(version);
        const bytes = await download(file);
        if (!allowed.get(file.relative_file_name)?.has(sha256(bytes)) || bytes.length !== file.size_bytes)
          violations.push(`${version}: not a complete version (${bytes.length} bytes)`);
      }
      await sleep(20);
    }

    const { code, stderr } = await run.done;
    assert.equal(code, 0, stderr);
    assert.deepEqual(violations, []);
    assert.ok(checked.size > 0, "nothing was listed while training ran");
    assert.ok(syncStatuses.has("SYNCING"), `checkpoint_sync_status seen while running: ${[...syncStatuses]}`);
    assert.deepEqual(await listedDigests(client, project.id, job.id), expectedDigests([...CHECKPOINTS.flat(), PROGRESS_VERSIONS.at(-1)!]));
    const finished = await client.getJob(project.id, job.id);
    assert.equal(finished.name, "sft-1");
    assert.equal(finished.current_status, "TRAINING_JOB_COMPLETED");
    assert.equal(finished.checkpoint_sync_status, "COMPLETED");
    assert.ok(existsSync(join(dir, ".ckpt-sync.jsonl")), "the resume journal is kept in the checkpoint folder");
  });

  test("a failing command: its files are synced, the job is FAILED with the exit code, ckpt exits with it", async (t) => {
    const { client, env } = await startSyncServer(t);
    const ws = workspace(t);
    const file: PlannedFile = { name: "checkpoint-10/weights.bin", chunks: 3, chunkSize: 10 * KiB };
    const train = ws.script("fail.mjs", `await writeSlowly(${JSON.stringify(file)}, 10); process.exit(3);`);
    const project = await client.upsertProject("already-there");

    const run = startCkpt(t, ["run", "--project", project.id, "--checkpoint-dir", join(ws.path, "out"), ...FAST, "--", process.execPath, train], env);
    const { code, stderr } = await run.done;
    assert.equal(code, 3, stderr);
    const [job, ...others] = await client.listJobs(project.id);
    assert.equal(others.length, 0);
    assert.equal(job!.current_status, "TRAINING_JOB_FAILED");
    assert.match(job!.error_message ?? "", /exited with code 3/);
    assert.deepEqual(await listedDigests(client, project.id, job!.id), expectedDigests([file]));
  });

  test("SIGTERM is forwarded: what the command writes on its way out is synced, the job is STOPPED, ckpt exits 128+15", async (t) => {
    const { client, env } = await startSyncServer(t);
    const ws = workspace(t);
    const dir = join(ws.path, "out");
    const saved: PlannedFile = { name: "checkpoint-1/model.bin", chunks: 2, chunkSize: 20 * KiB };
    const emergency: PlannedFile = { name: "emergency/state.bin", chunks: 2, chunkSize: 5 * KiB };
    const train = ws.script(
      "stoppable.mjs",
      `process.once("SIGTERM", async () => {
         await writeSlowly(${JSON.stringify(emergency)}, 0);
         process.kill(process.pid, "SIGTERM"); // now unhandled: die of it, as an unprepared script would
       });
       await writeSlowly(${JSON.stringify(saved)}, 0);
       // Then train "forever", writing a shard that never finishes.
       await writeSlowly({ name: "checkpoint-2/endless.bin", chunks: 100000, chunkSize: 1024 }, 20);`,
    );
    const run = startCkpt(t, ["run", "--project", "stoppable", "--checkpoint-dir", dir, ...FAST, "--", process.execPath, train], env);
    const project = await waitFor("the project", () => projectByName(client, "stoppable"));
    const job = await waitFor("the job", async () => (await client.listJobs(project.id))[0]);
    await waitFor("checkpoint-1 to be listed", async () =>
      (await listFiles(client, project.id, job.id)).some((f) => f.relative_file_name === saved.name),
    );
    run.child.kill("SIGTERM");

    const { code, stderr } = await run.done;
    assert.equal(code, 143, stderr);
    const stopped = await client.getJob(project.id, job.id);
    assert.equal(stopped.current_status, "TRAINING_JOB_STOPPED");
    assert.equal(stopped.checkpoint_sync_status, "COMPLETED");
    const listed = await listedDigests(client, project.id, job.id);
    assert.equal(listed[saved.name], sha256(contentOf(saved)));
    assert.equal(listed[emergency.name], sha256(contentOf(emergency)));
    // The endless shard is synced as the disk holds it, with a warning that it may be incomplete.
    assert.equal(listed["checkpoint-2/endless.bin"], sha256(readFileSync(join(dir, "checkpoint-2/endless.bin"))));
    assert.match(stderr, /may be incomplete:\n {2}checkpoint-2\/endless\.bin/);
  });

  test("a completion marker completes its checkpoint folder without waiting out --settle", async (t) => {
    const { client, env } = await startSyncServer(t);
    const ws = workspace(t);
    const release = join(ws.path, "release");
    const model: PlannedFile = { name: "checkpoint-7/model.safetensors", chunks: 3, chunkSize: 8 * KiB };
    const state: PlannedFile = { name: "checkpoint-7/trainer_state.json", chunks: 1, chunkSize: 200 };
    const lateFile: PlannedFile = { name: "checkpoint-7/rng_state.pth", chunks: 1, chunkSize: 100 };
    const rootFile: PlannedFile = { name: "notes.txt", chunks: 1, chunkSize: 100 };
    const train = ws.script(
      "hf-like.mjs",
      `await writeSlowly(${JSON.stringify(model)}, 5);
       await writeSlowly(${JSON.stringify(state)}, 0);
       await sleep(50); // written after the marker: it must settle like any file
       await writeSlowly(${JSON.stringify(lateFile)}, 0);
       await writeSlowly(${JSON.stringify(rootFile)}, 0);
       await waitForFile(${JSON.stringify(release)}, 30000);`,
    );
    const args = ["run", "--project", "markers", "--checkpoint-dir", join(ws.path, "out"), "--settle", "60", "--scan-interval", "0.1"];
    const run = startCkpt(t, [...args, "--", process.execPath, train], env);
    const project = await waitFor("the project", () => projectByName(client, "markers"));
    const job = await waitFor("the job", async () => (await client.listJobs(project.id))[0]);

    await waitFor("the marked model file to be listed", async () =>
      (await listFiles(client, project.id, job.id)).some((f) => f.relative_file_name === model.name),
    );
    await sleep(500); // several scans: anything else eligible would be listed by now
    const whileRunning = (await listFiles(client, project.id, job.id)).map((f) => f.relative_file_name);
    assert.deepEqual(whileRunning, [model.name], "only the file written before the marker is complete before --settle");
    assert.equal((await client.getJob(project.id, job.id)).current_status, "TRAINING_JOB_RUNNING");

    writeFileSync(release, "");
    const { code, stderr } = await run.done;
    assert.equal(code, 0, stderr);
    assert.deepEqual(await listedDigests(client, project.id, job.id), expectedDigests([model, state, lateFile, rootFile]));
  });

  test("refuses a rank above 0 without a job to join, and never starts the command", async (t) => {
    const { env } = await startSyncServer(t);
    const ws = workspace(t);
    const touched = join(ws.path, "started");
    const command = [process.execPath, "-e", `require("fs").writeFileSync(${JSON.stringify(touched)}, "")`];
    const run = startCkpt(t, ["run", "--project", "p", "--node-rank", "1", "--checkpoint-dir", ws.path, "--", ...command], env);
    const { code, stderr } = await run.done;
    assert.equal(code, 1);
    assert.match(stderr, /^ckpt: rank 1 joins rank 0's job: pass --job <id> or set CKPT_JOB_ID\n$/);
    assert.equal(existsSync(touched), false);
  });

  test("the command sees the checkpoint folder, rank and job under ckpt's and Baseten's names", async (t) => {
    const { client, env } = await startSyncServer(t);
    const ws = workspace(t);
    const dir = join(ws.path, "out");
    const show = ws.script(
      "env.mjs",
      `const names = ["CKPT_CHECKPOINT_DIR", "BT_CHECKPOINT_DIR", "CKPT_NODE_RANK", "BT_NODE_RANK", "CKPT_JOB_ID", "CKPT_PROJECT_ID"];
       console.log(JSON.stringify(Object.fromEntries(names.map((n) => [n, process.env[n]]))));`,
    );
    const run = startCkpt(t, ["run", "--project", "env", "--checkpoint-dir", dir, "--quiet", ...FAST, "--", process.execPath, show], env);
    const { code, stdout, stderr } = await run.done;
    assert.equal(code, 0, stderr);
    assert.equal(stderr, "");
    const project = (await client.listProjects()).find((p) => p.name === "env")!;
    const [job] = await client.listJobs(project.id);
    assert.deepEqual(JSON.parse(stdout), {
      CKPT_CHECKPOINT_DIR: dir,
      BT_CHECKPOINT_DIR: dir,
      CKPT_NODE_RANK: "0",
      BT_NODE_RANK: "0",
      CKPT_JOB_ID: job!.id,
      CKPT_PROJECT_ID: project.id,
    });
  });
});
