import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestServer, type TestServer } from "../harness/server.js";
import { api, setupJob, sha256 } from "../helpers/api.js";
import { assertBasetenShape } from "../helpers/spec.js";
import { hfTrainerCheckpoint, safetensorsBytes, shardedSafetensors } from "../helpers/frameworks.js";

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

type Job = Awaited<ReturnType<typeof setupJob>>;

async function checkpoints(job: Job): Promise<Record<string, any>> {
  const r = await job.client.get(`${job.jobPath}/checkpoints`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assertBasetenShape("GetTrainingJobCheckpointsResponseV1", r.body);
  return Object.fromEntries(r.body.checkpoints.map((c: any) => [c.checkpoint_id, c]));
}

async function put(job: Job, name: string, content: Buffer, rank = 0) {
  const r = await job.upload(rank, name, content, { "x-ckpt-sha256": sha256(content) });
  assert.equal(r.status, 201, JSON.stringify(r.body));
}

async function completeCheckpoint(job: Job, id: string) {
  const r = await job.client.post(`${job.jobPath}/checkpoints/${id}/complete`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.checkpoint;
}

describe("checkpoint completeness", () => {
  test("a safetensors index completes its checkpoint once every shard is there at its declared size, in any order", async () => {
    const job = await setupJob(server, "index-order");
    const { shards, index } = shardedSafetensors("merged");
    await put(job, index.name, index.content); // the index first: two shards still to come
    assert.equal((await checkpoints(job)).merged.state, "WRITING");
    await put(job, shards[0]!.name, shards[0]!.content);
    // A shard cut short (a writer caught mid-file) does not count.
    await put(job, shards[1]!.name, shards[1]!.content.subarray(0, shards[1]!.content.length - 100));
    assert.equal((await checkpoints(job)).merged.state, "WRITING");
    await put(job, shards[1]!.name, shards[1]!.content);
    const done = (await checkpoints(job)).merged;
    assert.deepEqual([done.state, done.completed_by, done.file_count], ["COMPLETE", "safetensors-index", 3]);
    assert.ok(Date.parse(done.completed_at) >= Date.parse(done.created_at));
    // The same shards on another rank are that rank's business: rank 1's index waits for rank 1's shards.
    await put(job, index.name, index.content, 1);
    assert.equal((await checkpoints(job)).merged.state, "COMPLETE", "still complete: a new file does not reopen it");
  });

  test("a replaced file reopens a COMPLETE checkpoint until its marker is written again; identical bytes do not", async () => {
    const job = await setupJob(server, "replace");
    const files = hfTrainerCheckpoint(5, 1, { step: 5, metric: 1 });
    for (const f of files) await put(job, f.name, f.content);
    assert.equal((await checkpoints(job))["checkpoint-5"].state, "COMPLETE");
    await put(job, files[1]!.name, files[1]!.content);
    assert.equal((await checkpoints(job))["checkpoint-5"].state, "COMPLETE", "identical re-send");
    await put(job, files[1]!.name, safetensorsBytes({ w: 10 }));
    const reopened = (await checkpoints(job))["checkpoint-5"];
    assert.deepEqual([reopened.state, reopened.completed_at], ["WRITING", null]);
    await put(job, files.at(-1)!.name, files.at(-1)!.content);
    assert.equal((await checkpoints(job))["checkpoint-5"].state, "COMPLETE");
  });

  test("the job ending: COMPLETED completes what is WRITING, FAILED and STOPPED leave it INCOMPLETE; explicit complete", async () => {
    for (const [status, expected] of [["TRAINING_JOB_COMPLETED", "COMPLETE"], ["TRAINING_JOB_FAILED", "INCOMPLETE"]] as const) {
      const job = await setupJob(server, `end-${status}`);
      await put(job, "a/x.bin", Buffer.from("x"));
      await put(job, "b/x.bin", Buffer.from("x"));
      await completeCheckpoint(job, "b");
      assert.equal((await job.client.patch(job.jobPath, { current_status: status })).status, 200);
      const listed = await checkpoints(job);
      assert.deepEqual([listed.a.state, listed.b.state, listed.b.completed_by], [expected, "COMPLETE", "explicit"]);
      if (expected === "COMPLETE") assert.equal(listed.a.completed_by, "job-completed");
    }
    const stopped = await setupJob(server, "end-stop");
    await put(stopped, "a/x.bin", Buffer.from("x"));
    assert.equal((await stopped.client.post(`${stopped.jobPath}/stop`)).status, 200);
    assert.equal((await checkpoints(stopped)).a.state, "INCOMPLETE");
    const explicit = await completeCheckpoint(stopped, "a");
    assert.deepEqual([explicit.state, explicit.completed_by], ["COMPLETE", "explicit"]);
  });

  test("unknown checkpoints, another tenant's job and hostile ids answer 404 with a message", async () => {
    const job = await setupJob(server, "complete-404");
    await put(job, "a/x.bin", Buffer.from("x"));
    const other = api(server.baseUrl, await server.createKey("intruder"));
    for (const [client, path] of [
      [job.client, `${job.jobPath}/checkpoints/nope/complete`],
      [other, `${job.jobPath}/checkpoints/a/complete`],
      [job.client, `${job.jobPath}/checkpoints/%00/complete`],
    ] as const) {
      const r = await client.post(path);
      assert.equal(r.status, 404, path);
      assert.equal(typeof r.body.message, "string");
    }
    assert.equal((await other.call("PUT", `${job.jobPath}/checkpoints/a/pin`)).status, 404);
    assert.equal((await other.get(`/v1/training_projects/${job.project.id}/aliases`)).status, 404);
    assert.equal((await other.get(`/v1/training_projects/${job.project.id}/retention/plan`)).status, 404);
  });
});

describe("aliases and pins", () => {
  test("aliases point across jobs, move with a history, and show in the listing; best is derived and reserved", async () => {
    const first = await setupJob(server, "aliases");
    const project = `/v1/training_projects/${first.project.id}`;
    const second = (await first.client.post(`${project}/jobs`, { training_job: { name: "run-2" } })).body.training_job;
    const secondPath = `${project}/jobs/${second.id}`;
    await put(first, "checkpoint-1/x.bin", Buffer.from("1"));
    assert.equal((await first.client.call("PUT", `${secondPath}/checkpoint_files/0/checkpoint-9/x.bin`, Buffer.from("9"))).status, 201);

    const set = (name: string, body: unknown) => first.client.call("PUT", `${project}/aliases/${name}`, body);
    const r1 = await set("prod", { training_job_id: first.job.id, checkpoint_id: "checkpoint-1" });
    assert.equal(r1.status, 200, JSON.stringify(r1.body));
    assert.deepEqual(Object.keys(r1.body.alias).sort(), ["checkpoint_id", "name", "training_job_id", "updated_at"]);
    assert.equal((await set("prod", { training_job_id: second.id, checkpoint_id: "checkpoint-9" })).status, 200);
    assert.equal((await set("canary", { training_job_id: first.job.id, checkpoint_id: "checkpoint-1" })).status, 200);
    const listed = await first.client.get(`${project}/aliases`);
    assert.deepEqual(listed.body.aliases.map((a: any) => [a.name, a.training_job_id, a.checkpoint_id]), [
      ["canary", first.job.id, "checkpoint-1"],
      ["prod", second.id, "checkpoint-9"],
    ]);
    assert.deepEqual((await checkpoints(first))["checkpoint-1"].aliases, ["canary"]);

    for (const [name, body, status] of [
      ["best", { training_job_id: first.job.id, checkpoint_id: "checkpoint-1" }, 400],
      ["-bad", { training_job_id: first.job.id, checkpoint_id: "checkpoint-1" }, 400],
      ["x", { training_job_id: first.job.id, checkpoint_id: "nope" }, 404],
      ["x", { training_job_id: "nosuchjob", checkpoint_id: "checkpoint-1" }, 404],
      ["x", { training_job_id: first.job.id, checkpoint_id: "a\u0000b" }, 404],
      ["x", { training_job_id: first.job.id }, 400],
    ] as const) {
      const r = await set(encodeURIComponent(name), body);
      assert.equal(r.status, status, `${name} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.equal(typeof r.body.message, "string");
    }

    assert.equal((await first.client.del(`${project}/aliases/prod`)).status, 200);
    assert.equal((await first.client.del(`${project}/aliases/prod`)).status, 404);
    const history = await first.client.get(`${project}/aliases/prod/history`);
    assert.deepEqual(history.body.history.map((h: any) => [h.version, h.training_job_id, h.checkpoint_id]), [
      [1, first.job.id, "checkpoint-1"],
      [2, second.id, "checkpoint-9"],
      [3, null, null],
    ]);
    assert.equal((await first.client.get(`${project}/aliases/never/history`)).status, 404);
  });

  test("@best follows trainer_state.json's best_model_checkpoint; pins show and clear", async () => {
    const job = await setupJob(server, "best");
    for (const [step, loss] of [[100, 0.5], [200, 0.7], [300, 0.9]] as const)
      for (const f of hfTrainerCheckpoint(step, loss, { step: 100, metric: 0.5 })) await put(job, f.name, f.content);
    const listed = await checkpoints(job);
    assert.deepEqual(Object.entries(listed).filter(([, c]) => c.aliases.includes("best")).map(([id]) => id), ["checkpoint-100"]);
    const pinned = await job.client.call("PUT", `${job.jobPath}/checkpoints/checkpoint-200/pin`);
    assert.equal(pinned.status, 200);
    assert.equal(pinned.body.checkpoint.pinned, true);
    assert.equal((await checkpoints(job))["checkpoint-200"].pinned, true);
    assert.equal((await job.client.del(`${job.jobPath}/checkpoints/checkpoint-200/pin`)).body.checkpoint.pinned, false);
  });
});

describe("retention", () => {
  /** Checkpoints 100..600 of one job, all COMPLETE, with eval_loss from trainer_state.json. */
  async function sixCheckpoints(org: string): Promise<Job> {
    const job = await setupJob(server, org);
    const losses = [0.9, 0.3, 0.8, 0.7, 0.6, 0.5];
    for (let i = 0; i < 6; i++) {
      const step = (i + 1) * 100;
      for (const f of hfTrainerCheckpoint(step, losses[i]!, { step: 200, metric: 0.3 })) await put(job, f.name, f.content, 0);
      await put(job, `checkpoint-${step}/model.safetensors`, safetensorsBytes({ w: 100 }), 1);
    }
    await put(job, "checkpoint-700/model.safetensors", Buffer.alloc(10)); // WRITING: no marker yet
    await put(job, "run-config.yaml", Buffer.from("lr: 1e-5"));
    return job;
  }

  test("plan is exact; apply deletes that plan and frees its blobs; pinned, aliased, best, newest and WRITING stay", async () => {
    const job = await sixCheckpoints("retention-plan");
    const project = `/v1/training_projects/${job.project.id}`;
    const none = await job.client.get(`${project}/retention/plan`);
    assert.deepEqual([none.body.delete, none.body.bytes_freed], [[], 0], "no policy deletes nothing");
    assert.equal((await job.client.call("PUT", `${project}/retention`, { keep_last: 2, keep_best: 1, metric: "eval_loss" })).status, 200);
    assert.deepEqual((await job.client.get(`${project}/retention`)).body.policy, {
      keep_last: 2, keep_best: 1, metric: "eval_loss", mode: null, max_age_seconds: null, auto: false,
    });
    assert.equal((await job.client.call("PUT", `${job.jobPath}/checkpoints/checkpoint-100/pin`)).status, 200);
    assert.equal((await job.client.call("PUT", `${project}/aliases/prod`, { training_job_id: job.job.id, checkpoint_id: "checkpoint-300" })).status, 200);

    const before = await checkpoints(job);
    const plan = await job.client.get(`${project}/retention/plan`);
    assert.equal(plan.status, 200);
    // 100 pinned, 200 best (and @best), 300 aliased, 500 and 600 the last two, 700 WRITING: only 400 goes.
    assert.deepEqual(plan.body.delete.map((c: any) => c.checkpoint_id), ["checkpoint-400"]);
    assert.equal(plan.body.bytes_freed, before["checkpoint-400"].size_bytes);
    const reasons = Object.fromEntries(plan.body.keep.map((k: any) => [k.checkpoint_id, k.reasons]));
    assert.deepEqual(reasons["checkpoint-100"], ["pinned"]);
    assert.ok(reasons["checkpoint-200"].includes("keep-best") && reasons["checkpoint-200"].includes("aliased"));
    assert.deepEqual(reasons["checkpoint-700"], ["writing"]);
    assert.ok(reasons["checkpoint-600"].includes("newest-complete"));

    const urls = (await job.client.get(`${job.jobPath}/checkpoint_files`)).body.presigned_urls.filter((f: any) => f.relative_file_name.startsWith("checkpoint-400/"));
    assert.equal(urls.length, 8);
    const applied = await job.client.post(`${project}/retention/apply`, { checkpoints: plan.body.delete.map((c: any) => ({ training_job_id: c.training_job_id, checkpoint_id: c.checkpoint_id })) });
    assert.equal(applied.status, 200, JSON.stringify(applied.body));
    assert.deepEqual(applied.body.deleted.map((c: any) => c.checkpoint_id), ["checkpoint-400"]);
    assert.equal(applied.body.bytes_freed, plan.body.bytes_freed);
    const after = await checkpoints(job);
    assert.deepEqual(Object.keys(after).sort(), Object.keys(before).filter((id) => id !== "checkpoint-400").sort());
    const files = (await job.client.get(`${job.jobPath}/checkpoint_files`)).body;
    assert.equal(files.presigned_urls.filter((f: any) => f.relative_file_name.startsWith("checkpoint-400/")).length, 0);
    assert.equal(files.total_count, files.presigned_urls.length);
    assert.ok(files.presigned_urls.some((f: any) => f.relative_file_name === "run-config.yaml"), "root files are untouched");
    for (const f of urls) assert.equal((await fetch(f.url)).status, 404, "the bytes are gone");
    for (const rank of [0, 1]) {
      const key = `training_projects/${job.project.id}/jobs/${job.job.id}/rank-${rank}/checkpoint-400/`;
      const left: string[] = [];
      for await (const k of server.service.blobs.listKeys(key)) left.push(k);
      assert.deepEqual(left, [], `blobs of rank ${rank} collected`);
    }
    // A plan the user saw that the policy no longer deletes deletes nothing.
    const stale = await job.client.post(`${project}/retention/apply`, { checkpoints: [{ training_job_id: job.job.id, checkpoint_id: "checkpoint-600" }] });
    assert.deepEqual(stale.body.deleted, []);
    // The checkpoint can be written again, from scratch, at new positions.
    await put(job, "checkpoint-400/again.bin", Buffer.from("again"));
    assert.deepEqual([(await checkpoints(job))["checkpoint-400"].state, (await checkpoints(job))["checkpoint-400"].file_count], ["WRITING", 1]);
  });

  test("two applies at once delete each checkpoint once; max-age keeps the young; bad policies are a 400", async () => {
    const job = await sixCheckpoints("retention-race");
    const project = `/v1/training_projects/${job.project.id}`;
    for (const body of [{ keep_last: -1 }, { keep_best: 1 }, { mode: "sideways" }, { keep_last: 1, extra: true }, { max_age_seconds: "14d" }]) {
      const r = await job.client.call("PUT", `${project}/retention`, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(typeof r.body.message, "string");
    }
    await job.client.call("PUT", `${project}/retention`, { max_age_seconds: 3600 });
    assert.deepEqual((await job.client.get(`${project}/retention/plan`)).body.delete, [], "all younger than an hour");
    await job.client.call("PUT", `${project}/retention`, { keep_last: 1 });
    const [a, b] = await Promise.all([job.client.post(`${project}/retention/apply`), job.client.post(`${project}/retention/apply`)]);
    const deleted = [...a.body.deleted, ...b.body.deleted].map((c: any) => c.checkpoint_id).sort();
    // 200 stays as @best; 600 is the newest COMPLETE; 700 is WRITING.
    assert.deepEqual(deleted, ["checkpoint-100", "checkpoint-300", "checkpoint-400", "checkpoint-500"]);
    assert.deepEqual(Object.keys(await checkpoints(job)).sort(), ["checkpoint-200", "checkpoint-600", "checkpoint-700"]);
  });

  test("--auto: the server applies the policy when a checkpoint completes", async () => {
    const job = await setupJob(server, "retention-auto");
    const project = `/v1/training_projects/${job.project.id}`;
    await job.client.call("PUT", `${project}/retention`, { keep_last: 2, auto: true });
    for (const step of [1, 2, 3, 4]) {
      await put(job, `step-${step}/w.bin`, Buffer.from(String(step)));
      await put(job, `step-${step}/COMPLETE`, Buffer.alloc(0));
    }
    assert.deepEqual(Object.keys(await checkpoints(job)).sort(), ["step-3", "step-4"]);
  });
});
