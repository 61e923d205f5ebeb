import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestServer, type TestServer } from "../harness/server.js";
import { api, setupJob } from "../helpers/api.js";
import { assertBasetenShape } from "../helpers/spec.js";

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

/** A body written for Baseten's API, unchanged. */
const basetenJobBody = {
  training_job: {
    image: { base_image: "pytorch/pytorch:2.7.0-cuda12.8-cudnn9-runtime" },
    compute: { accelerator: { accelerator: "H100", count: 8 }, node_count: 2 },
    runtime: { start_commands: ["python train.py"], environment_variables: { LR: "1e-4" } },
    name: "gpt-oss-job",
  },
};

describe("training projects", () => {
  test("POST upserts by name; GET list and GET one answer Baseten's shapes", async () => {
    const client = api(server.baseUrl, await server.createKey("proj-org"));
    const created = await client.post("/v1/training_projects", { training_project: { name: "llama" } });
    assert.equal(created.status, 200);
    assertBasetenShape("UpsertTrainingProjectResponseV1", created.body);
    const again = await client.post("/v1/training_projects", { training_project: { name: "llama" } });
    assert.equal(again.body.training_project.id, created.body.training_project.id, "same name, same project");
    const other = await client.post("/v1/training_projects", { training_project: { name: "mistral" } });
    assert.notEqual(other.body.training_project.id, created.body.training_project.id);

    const list = await client.get("/v1/training_projects");
    assertBasetenShape("ListTrainingProjectsResponseV1", list.body);
    assert.deepEqual(list.body.training_projects.map((p: any) => p.name), ["llama", "mistral"]);
    const one = await client.get(`/v1/training_projects/${created.body.training_project.id}`);
    assertBasetenShape("GetTrainingProjectResponseV1", one.body);
    assert.equal(one.body.training_project.latest_job, null);
  });

  test("a project's latest_job is its newest job", async () => {
    const { client, project } = await setupJob(server, "proj-latest");
    const newer = (await client.post(`/v1/training_projects/${project.id}/jobs`, { training_job: { name: "second" } })).body.training_job;
    const got = await client.get(`/v1/training_projects/${project.id}`);
    assertBasetenShape("GetTrainingProjectResponseV1", got.body);
    assert.equal(got.body.training_project.latest_job.id, newer.id);
  });

  test("DELETE removes the project, its jobs and their files", async () => {
    const { client, project, jobPath, upload } = await setupJob(server, "proj-delete");
    const put = await upload(0, "a.bin", Buffer.from("bytes"));
    const del = await client.del(`/v1/training_projects/${project.id}`);
    assert.equal(del.status, 200);
    assertBasetenShape("TrainingProjectTombstoneV1", del.body);
    assert.deepEqual(del.body, { id: project.id, deleted: true });
    assert.equal((await client.get(`/v1/training_projects/${project.id}`)).status, 404);
    assert.equal((await client.get(jobPath)).status, 404);
    assert.notEqual((await fetch(put.body.url)).status, 200);
    assert.equal((await client.del(`/v1/training_projects/${project.id}`)).status, 404);
    // The name is free again.
    const again = await client.post("/v1/training_projects", { training_project: { name: "llama" } });
    assert.notEqual(again.body.training_project.id, project.id);
  });

  for (const [what, body] of [
    ["no training_project", {}],
    ["an empty name", { training_project: { name: "" } }],
    ["a numeric name", { training_project: { name: 42 } }],
    ["a name over 1024 characters", { training_project: { name: "n".repeat(1025) } }],
  ] as const) {
    test(`POST with ${what} is a 400 with a message`, async () => {
      const client = api(server.baseUrl, await server.createKey("proj-bad"));
      const r = await client.post("/v1/training_projects", body);
      assert.equal(r.status, 400);
      assert.equal(typeof r.body.message, "string");
    });
  }
});

describe("training jobs", () => {
  test("a body written for Baseten creates a job in Baseten's shape", async () => {
    const { client, project } = await setupJob(server, "job-baseten-body");
    const r = await client.post(`/v1/training_projects/${project.id}/jobs`, basetenJobBody);
    assert.equal(r.status, 200);
    assertBasetenShape("CreateTrainingJobResponseV1", r.body);
    const job = r.body.training_job;
    assert.equal(job.current_status, "TRAINING_JOB_CREATED");
    assert.equal(job.name, "gpt-oss-job");
    assert.equal(job.instance_type.gpu_type, "H100");
    assert.equal(job.instance_type.gpu_count, 8);
    assert.deepEqual(job.training_project, { id: project.id, name: project.name });
  });

  test("image and name are optional", async () => {
    const { client, project } = await setupJob(server, "job-minimal");
    const r = await client.post(`/v1/training_projects/${project.id}/jobs`, { training_job: {} });
    assert.equal(r.status, 200);
    assertBasetenShape("TrainingJobV1", r.body.training_job);
    assert.equal(r.body.training_job.name, null);
  });

  test("list is newest first; GET one carries the project", async () => {
    const { client, project, job } = await setupJob(server, "job-list");
    const second = (await client.post(`/v1/training_projects/${project.id}/jobs`, { training_job: {} })).body.training_job;
    const list = await client.get(`/v1/training_projects/${project.id}/jobs`);
    assertBasetenShape("ListTrainingJobsResponseV1", list.body);
    assert.deepEqual(list.body.training_jobs.map((j: any) => j.id), [second.id, job.id]);
    const one = await client.get(`/v1/training_projects/${project.id}/jobs/${job.id}`);
    assertBasetenShape("GetTrainingJobResponseV1", one.body);
    assert.equal(one.body.training_job.id, job.id);
  });

  test("the training side moves the status with PATCH; stop answers Baseten's shape", async () => {
    const { client, jobPath } = await setupJob(server, "job-status");
    const running = await client.patch(jobPath, { current_status: "TRAINING_JOB_RUNNING", checkpoint_sync_status: "SYNCING" });
    assert.equal(running.status, 200);
    assertBasetenShape("UpdateTrainingJobResponseV1", running.body);
    assert.equal(running.body.training_job.current_status, "TRAINING_JOB_RUNNING");
    assert.equal(running.body.training_job.checkpoint_sync_status, "SYNCING");
    const priority = await client.patch(jobPath, { priority: 5 });
    assert.equal(priority.body.training_job.priority, 5);
    assert.equal(priority.body.training_job.current_status, "TRAINING_JOB_RUNNING");
    const stopped = await client.post(`${jobPath}/stop`, {});
    assertBasetenShape("StopTrainingJobResponseV1", stopped.body);
    assert.equal(stopped.body.training_job.current_status, "TRAINING_JOB_STOPPED");
    const failed = await client.patch(jobPath, { current_status: "TRAINING_JOB_FAILED", error_message: "exit code 3" });
    assert.equal(failed.body.training_job.error_message, "exit code 3");
    // Stopping a finished job changes nothing.
    assert.equal((await client.post(`${jobPath}/stop`, {})).body.training_job.current_status, "TRAINING_JOB_FAILED");
  });

  for (const [what, body] of [
    ["an unknown status", { current_status: "TRAINING_JOB_EXPLODED" }],
    ["an empty body", {}],
    ["a string priority", { priority: "high" }],
    ["an unknown sync status", { checkpoint_sync_status: "MAYBE" }],
  ] as const) {
    test(`PATCH with ${what} is a 400`, async () => {
      const { client, jobPath } = await setupJob(server, `job-patch-${what}`);
      const r = await client.patch(jobPath, body);
      assert.equal(r.status, 400);
      assert.equal(typeof r.body.message, "string");
    });
  }

  test("DELETE removes the job and its files; its URLs stop working", async () => {
    const { client, jobPath, job, project, upload } = await setupJob(server, "job-delete");
    const put = await upload(1, "ckpt-1/w.bin", Buffer.from("weights"));
    const del = await client.del(jobPath);
    assertBasetenShape("TrainingJobTombstoneV1", del.body);
    assert.deepEqual(del.body, { id: job.id, deleted: true, training_project_id: project.id });
    assert.equal((await client.get(jobPath)).status, 404);
    assert.notEqual((await fetch(put.body.url)).status, 200);
    if (server.backend === "sqlite-local") {
      const { existsSync } = await import("node:fs");
      assert.ok(!existsSync(`${server.dataDir}/blobs/training_projects/${project.id}/jobs/${job.id}`), "blobs removed");
    }
  });
});

describe("checkpoints", () => {
  test("top-level folders are checkpoints, root files belong to none, sizes summed over ranks", async () => {
    const { client, jobPath, upload } = await setupJob(server, "ckpts");
    await upload(0, "checkpoint-100/model.safetensors", Buffer.alloc(100));
    await upload(1, "checkpoint-100/model.safetensors", Buffer.alloc(150));
    await upload(0, "checkpoint-200/adapter_config.json", Buffer.alloc(10));
    await upload(0, "checkpoint-200/adapter_model.safetensors", Buffer.alloc(20));
    await upload(0, "config.json", Buffer.alloc(5));
    const r = await client.get(`${jobPath}/checkpoints`);
    assert.equal(r.status, 200);
    assertBasetenShape("GetTrainingJobCheckpointsResponseV1", r.body);
    const byId = Object.fromEntries(r.body.checkpoints.map((c: any) => [c.checkpoint_id, c]));
    assert.deepEqual(Object.keys(byId).sort(), ["checkpoint-100", "checkpoint-200"]);
    assert.equal(byId["checkpoint-100"].size_bytes, 250);
    assert.equal(byId["checkpoint-200"].checkpoint_type, "lora");
    assert.equal(byId["checkpoint-100"].checkpoint_type, "full");
    assert.equal(byId["checkpoint-100"].file_count, 2);
    assert.equal(byId["checkpoint-100"].state, "WRITING");
    const files = await client.get(`${jobPath}/checkpoint_files`);
    assert.ok(files.body.presigned_urls.some((f: any) => f.relative_file_name === "config.json"), "the root file is still a checkpoint file");
    assert.equal(byId["checkpoint-100"].sync_status, "COMPLETED");
    // While the training side reports syncing, so do the checkpoints.
    await client.patch(jobPath, { checkpoint_sync_status: "SYNCING" });
    const syncing = await client.get(`${jobPath}/checkpoints`);
    assert.ok(syncing.body.checkpoints.every((c: any) => c.sync_status === "SYNCING"));
  });
});
