import assert from "node:assert/strict";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import type { CkptClient } from "../../src/client/api.js";
import type { TrainingJobCheckpoint } from "../../src/client/types.js";
import { assertBasetenShape } from "../helpers/spec.js";
import { deepSpeedCheckpoint, dcpCheckpoint, hfTrainerCheckpoint, shardedSafetensors, type LayoutFile } from "../helpers/frameworks.js";
import { FAST, listFiles, startCkpt, startSyncServer, waitFor, workspace } from "./support.js";

/**
 * Real frameworks' layouts written by a training script under `ckpt run`, slowly and markers
 * last, as the frameworks do; the checkpoints endpoint is polled throughout. A checkpoint may be
 * listed COMPLETE only once every one of its files is listed.
 */
const LAYOUTS: LayoutFile[][] = [
  hfTrainerCheckpoint(100, 0.9, { step: 100, metric: 0.9 }),
  dcpCheckpoint("dcp-step-150"),
  hfTrainerCheckpoint(200, 1.1, { step: 100, metric: 0.9 }),
  deepSpeedCheckpoint(300),
  [...shardedSafetensors("merged").shards, shardedSafetensors("merged").index],
];

/** The script writes each file in slices with pauses, so uploads overlap the writing. */
function trainingScript(layouts: LayoutFile[][], then: string): string {
  const files = layouts.flat().map((f) => ({ name: f.name, b64: f.content.toString("base64") }));
  return `const files = ${JSON.stringify(files)};
    for (const f of files) {
      const bytes = Buffer.from(f.b64, "base64");
      const path = join(dir, f.name);
      mkdirSync(dirname(path), { recursive: true });
      const fd = openSync(path, "w");
      for (let at = 0; at < bytes.length && !orphaned(); at += 16384) {
        writeSync(fd, bytes.subarray(at, at + 16384));
        await sleep(15);
      }
      closeSync(fd);
    }
    ${then}`;
}

async function watchStates(client: CkptClient, projectId: string, jobId: string, until: () => boolean, expectedFiles: Map<string, number>) {
  const violations: string[] = [];
  const seen = new Map<string, Set<string>>();
  while (!until()) {
    // One after the other, checkpoints first (not side by side: the server may answer the files
    // first, from before a commit the checkpoints listing then shows): every file listed when a
    // checkpoint was COMPLETE is listed in the files listing read after it.
    const checkpoints = await client.listCheckpoints(projectId, jobId);
    const files = await listFiles(client, projectId, jobId);
    for (const c of checkpoints) {
      seen.set(c.checkpoint_id, (seen.get(c.checkpoint_id) ?? new Set()).add(String(c.state)));
      const listed = files.filter((f) => f.relative_file_name.startsWith(`${c.checkpoint_id}/`)).map((f) => f.relative_file_name);
      if (c.state === "COMPLETE" && listed.length < (expectedFiles.get(c.checkpoint_id) ?? 0))
        violations.push(`${c.checkpoint_id} COMPLETE with ${listed.length} of ${expectedFiles.get(c.checkpoint_id)} files listed (${listed.join(", ")})`);
    }
    await sleep(30);
  }
  return { violations, seen };
}

function expectedCounts(layouts: LayoutFile[][]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const f of layouts.flat()) {
    const slash = f.name.indexOf("/");
    if (slash > 0) counts.set(f.name.slice(0, slash), (counts.get(f.name.slice(0, slash)) ?? 0) + 1);
  }
  return counts;
}

describe("checkpoint states under ckpt run", { concurrency: true }, () => {
  test("HF Trainer, DCP, DeepSpeed and sharded safetensors checkpoints become COMPLETE by their own markers, never early", async (t) => {
    const { client, env } = await startSyncServer(t);
    const ws = workspace(t);
    // The job stays RUNNING until the test has seen every marker: a job ending COMPLETED would complete them anyway.
    const train = ws.script("train.mjs", trainingScript(LAYOUTS, `await waitForFile(join(dir, "..", "release"), 60000);`));
    const dir = join(ws.path, "ckpts", "rank-0");
    const run = startCkpt(t, ["run", "--project", "frameworks", "--job-name", "f-1", "--checkpoint-dir", dir, ...FAST, "--", process.execPath, train], env);
    const project = await waitFor("the project", async () => (await client.listProjects()).find((p) => p.name === "frameworks"));
    const job = await waitFor("the job", async () => (await client.listJobs(project.id))[0]);
    const expected = expectedCounts(LAYOUTS);
    let complete = false;
    const watching = watchStates(client, project.id, job.id, () => complete, expected);
    const all = await waitFor(
      "every checkpoint COMPLETE",
      async () => {
        const listed = await client.listCheckpoints(project.id, job.id);
        return listed.length === expected.size && listed.every((c) => c.state === "COMPLETE") ? listed : undefined;
      },
      60_000,
    );
    complete = true;
    const { violations, seen } = await watching;
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(ws.path, "ckpts", "release"), "");
    const { code, stderr } = await run.done;
    assert.equal(code, 0, stderr);

    assert.deepEqual(violations, []);
    const byId = new Map<string, TrainingJobCheckpoint>(all.map((c) => [c.checkpoint_id, c]));
    assert.deepEqual([...byId.keys()].sort(), ["checkpoint-100", "checkpoint-200", "dcp-step-150", "global_step300", "merged"]);
    assert.deepEqual(
      Object.fromEntries([...byId].map(([id, c]) => [id, c.completed_by])),
      { "checkpoint-100": "marker", "checkpoint-200": "marker", "dcp-step-150": "marker", global_step300: "deepspeed-latest", merged: "safetensors-index" },
    );
    for (const [id, c] of byId) {
      assert.equal(c.file_count, expected.get(id), `${id} file_count`);
      assert.ok(seen.get(id)?.has("WRITING") || c.file_count === 1, `${id} was WRITING before it was COMPLETE (seen: ${[...(seen.get(id) ?? [])]})`);
    }
    assert.deepEqual(byId.get("checkpoint-100")?.aliases, ["best"], "best_model_checkpoint of the newest trainer_state.json");
    const response = { training_job: await client.getJob(project.id, job.id), checkpoints: all };
    assertBasetenShape("GetTrainingJobCheckpointsResponseV1", response);
    const rootFiles = (await listFiles(client, project.id, job.id)).filter((f) => !f.relative_file_name.includes("/"));
    assert.deepEqual(rootFiles.map((f) => f.relative_file_name), ["latest"], "DeepSpeed's latest stays a file, not a checkpoint");
  });

  test("a crash mid-checkpoint: the finished checkpoint is COMPLETE, the cut one INCOMPLETE once the job FAILED", async (t) => {
    const { client, env } = await startSyncServer(t);
    const ws = workspace(t);
    const finished = hfTrainerCheckpoint(10, 1.0, { step: 10, metric: 1.0 });
    const cut = hfTrainerCheckpoint(20, 0.8, { step: 20, metric: 0.8 }).slice(0, 3); // dies before trainer_state.json
    const train = ws.script("crash.mjs", trainingScript([finished, cut], `process.exit(1);`));
    const run = startCkpt(t, ["run", "--project", "crashy", "--checkpoint-dir", join(ws.path, "out"), ...FAST, "--", process.execPath, train], env);
    const { code } = await run.done;
    assert.equal(code, 1);
    const project = (await client.listProjects()).find((p) => p.name === "crashy")!;
    const [job] = await client.listJobs(project.id);
    assert.equal(job!.current_status, "TRAINING_JOB_FAILED");
    const states = Object.fromEntries((await client.listCheckpoints(project.id, job!.id)).map((c) => [c.checkpoint_id, [c.state, c.file_count]]));
    assert.deepEqual(states, { "checkpoint-10": ["COMPLETE", 7], "checkpoint-20": ["INCOMPLETE", 3] });
  });
});
