// Baseten's runtime.load_checkpoint_config, honoured by `ckpt run` against a real server: each
// rank downloads its own rank's files of the referenced checkpoints before the command starts,
// under $BT_LOAD_CHECKPOINT_DIR/rank-<node_rank>/, and a missing checkpoint fails the job.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { api, type Api } from "../helpers/api.js";
import { startCkpt, startSyncServer, workspace } from "./support.js";

/** Prints the two variables and every file under the load folder with its contents, then exits 0. */
const LIST_SCRIPT = `
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
writeFileSync(process.argv[2], "started");
const dir = process.env.BT_LOAD_CHECKPOINT_DIR;
console.log(JSON.stringify({ bt: dir ?? null, ckpt: process.env.CKPT_LOAD_CHECKPOINT_DIR ?? null }));
const walk = (d) => readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
if (dir) for (const f of walk(dir).filter((f) => !relative(dir, f).split("/").some((s) => s.startsWith(".")))) console.log(relative(dir, f) + "=" + readFileSync(f, "utf8"));
`;

async function uploadJob(client: Api, projectName: string, files: [number, string][]): Promise<{ projectId: string; jobId: string }> {
  const project = (await client.post("/v1/training_projects", { training_project: { name: projectName } })).body.training_project;
  const job = (await client.post(`/v1/training_projects/${project.id}/jobs`, { training_job: { name: "source" } })).body.training_job;
  for (const [rank, name] of files) {
    const r = await client.put(`/v1/training_projects/${project.id}/jobs/${job.id}/checkpoint_files/${rank}/${name}`, Buffer.from(`${rank}:${name}`));
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  return { projectId: project.id, jobId: job.id };
}

function loadFolder(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "ckpt-load-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, "loaded");
}

describe("ckpt run: load_checkpoint_config", { concurrency: true }, () => {
  test("a named checkpoint of a job: each rank gets its own rank's files of it, before the command starts", async (t) => {
    const { server, env } = await startSyncServer(t);
    const client = api(server.baseUrl, env.CKPT_API_KEY!);
    const source = await uploadJob(client, "base", [
      [0, "checkpoint-10/model.safetensors"],
      [0, "checkpoint-10/config.json"],
      [1, "checkpoint-10/model.safetensors"],
      [0, "checkpoint-20/model.safetensors"],
    ]);
    const folder = loadFolder(t);
    const project = (await client.post("/v1/training_projects", { training_project: { name: "resume" } })).body.training_project;
    const created = await client.post(`/v1/training_projects/${project.id}/jobs`, {
      training_job: {
        name: "resumed",
        runtime: {
          start_commands: ["python train.py"],
          load_checkpoint_config: {
            enabled: true,
            download_folder: folder,
            checkpoints: [{ typ: "baseten_named_checkpoint", checkpoint_name: "checkpoint-10", job_id: source.jobId }],
          },
        },
      },
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const jobId = created.body.training_job.id;
    const ws = workspace(t);
    const script = join(ws.path, "list.mjs");
    (await import("node:fs")).writeFileSync(script, LIST_SCRIPT);

    for (const rank of [1, 0]) {
      const marker = join(ws.path, `started-${rank}`);
      const run = startCkpt(t, ["run", "--project", "resume", "--job", jobId, "--node-rank", String(rank), "--quiet", "--no-logs", "--checkpoint-dir", join(ws.path, `ckpt-${rank}`), "--", process.execPath, script, marker], env);
      const { code, stdout, stderr } = await run.done;
      assert.equal(code, 0, stderr);
      const [vars, ...files] = stdout.trim().split("\n");
      assert.deepEqual(JSON.parse(vars!), { bt: folder, ckpt: folder });
      const mine = files.filter((f) => f.startsWith(`rank-${rank}/`)).sort();
      const expected =
        rank === 1
          ? ["rank-1/checkpoint-10/model.safetensors=1:checkpoint-10/model.safetensors"]
          : ["rank-0/checkpoint-10/config.json=0:checkpoint-10/config.json", "rank-0/checkpoint-10/model.safetensors=0:checkpoint-10/model.safetensors"];
      assert.deepEqual(mine, expected, `rank ${rank} got its own rank's files of checkpoint-10 only`);
    }
    const job = (await client.get(`/v1/training_projects/${project.id}/jobs/${jobId}`)).body.training_job;
    assert.equal(job.current_status, "TRAINING_JOB_COMPLETED");
  });

  test("the latest checkpoint of a project, from ckpt run's --load-checkpoint-config", async (t) => {
    const { server, env } = await startSyncServer(t);
    const client = api(server.baseUrl, env.CKPT_API_KEY!);
    await uploadJob(client, "base", [[0, "checkpoint-10/model.safetensors"]]);
    await uploadJob(client, "base", [[0, "checkpoint-10/model.safetensors"], [0, "checkpoint-30/model.safetensors"]]);
    const folder = loadFolder(t);
    const ws = workspace(t);
    const script = join(ws.path, "list.mjs");
    (await import("node:fs")).writeFileSync(script, LIST_SCRIPT);
    const config = { enabled: true, download_folder: folder, checkpoints: [{ typ: "baseten_latest_checkpoint", project_name: "base" }] };
    const run = startCkpt(
      t,
      ["run", "--project", "next", "--quiet", "--no-logs", "--checkpoint-dir", join(ws.path, "ckpt"), "--load-checkpoint-config", JSON.stringify(config), "--", process.execPath, script, join(ws.path, "m")],
      env,
    );
    const { code, stdout, stderr } = await run.done;
    assert.equal(code, 0, stderr);
    const files = stdout.trim().split("\n").slice(1);
    assert.deepEqual(files, ["rank-0/checkpoint-30/model.safetensors=0:checkpoint-30/model.safetensors"], "the newest job's newest checkpoint");
  });

  test("a named checkpoint that does not exist: the job FAILED with a clear error_message, the command never started", async (t) => {
    const { server, env } = await startSyncServer(t);
    const client = api(server.baseUrl, env.CKPT_API_KEY!);
    const source = await uploadJob(client, "base", [[0, "checkpoint-10/model.safetensors"]]);
    const project = (await client.post("/v1/training_projects", { training_project: { name: "resume" } })).body.training_project;
    const created = await client.post(`/v1/training_projects/${project.id}/jobs`, {
      training_job: {
        runtime: {
          load_checkpoint_config: {
            enabled: true,
            download_folder: loadFolder(t),
            checkpoints: [{ typ: "baseten_named_checkpoint", checkpoint_name: "checkpoint-99", job_id: source.jobId }],
          },
        },
      },
    });
    const jobId = created.body.training_job.id;
    const plan = await client.get(`/v1/training_projects/${project.id}/jobs/${jobId}/load_checkpoint_config`);
    assert.equal(plan.status, 422);
    assert.equal(plan.body.code, "CHECKPOINT_NOT_FOUND");

    const ws = workspace(t);
    const script = join(ws.path, "list.mjs");
    (await import("node:fs")).writeFileSync(script, LIST_SCRIPT);
    const marker = join(ws.path, "started");
    const run = startCkpt(t, ["run", "--project", "resume", "--job", jobId, "--quiet", "--checkpoint-dir", join(ws.path, "ckpt"), "--", process.execPath, script, marker], env);
    const { code, stderr } = await run.done;
    assert.notEqual(code, 0);
    assert.match(stderr, /could not load checkpoints: checkpoint "checkpoint-99" does not exist in training job/);
    assert.equal(existsSync(marker), false, "the command was not started");
    const job = (await client.get(`/v1/training_projects/${project.id}/jobs/${jobId}`)).body.training_job;
    assert.equal(job.current_status, "TRAINING_JOB_FAILED");
    assert.equal(job.error_message, `could not load checkpoints: checkpoint "checkpoint-99" does not exist in training job ${source.jobId}`);
  });

  test("the plan endpoint: disabled or absent config loads nothing; bad configs and unknown references are 422s", async (t) => {
    const { server, env } = await startSyncServer(t);
    const client = api(server.baseUrl, env.CKPT_API_KEY!);
    const project = (await client.post("/v1/training_projects", { training_project: { name: "p" } })).body.training_project;
    const planOf = async (runtime: unknown) => {
      const job = (await client.post(`/v1/training_projects/${project.id}/jobs`, { training_job: runtime === undefined ? {} : { runtime } })).body.training_job;
      return client.get(`/v1/training_projects/${project.id}/jobs/${job.id}/load_checkpoint_config`);
    };
    assert.deepEqual((await planOf(undefined)).body, { enabled: false, download_folder: "/tmp/loaded_checkpoints", checkpoints: [] });
    assert.equal((await planOf({ load_checkpoint_config: { enabled: false, checkpoints: [{ typ: "baseten_latest_checkpoint" }] } })).body.enabled, false);
    for (const [config, code] of [
      [{ enabled: "yes" }, "INVALID_LOAD_CHECKPOINT_CONFIG"],
      [{ enabled: true, checkpoints: [{ typ: "loops_checkpoint", run_id: "r", checkpoint_name: "c" }] }, "INVALID_LOAD_CHECKPOINT_CONFIG"],
      [{ enabled: true, checkpoints: [{ typ: "baseten_named_checkpoint" }] }, "INVALID_LOAD_CHECKPOINT_CONFIG"],
      [{ enabled: true, checkpoints: [{ typ: "baseten_latest_checkpoint", project_name: "nope" }] }, "CHECKPOINT_NOT_FOUND"],
      [{ enabled: true, checkpoints: [{ typ: "baseten_latest_checkpoint", job_id: "nojob" }] }, "CHECKPOINT_NOT_FOUND"],
      [{ enabled: true, checkpoints: [{ typ: "baseten_latest_checkpoint" }] }, "CHECKPOINT_NOT_FOUND"],
    ] as const) {
      const r = await planOf({ load_checkpoint_config: config });
      assert.equal(r.status, 422, JSON.stringify(config));
      assert.equal(r.body.code, code, JSON.stringify(config));
      assert.equal(typeof r.body.message, "string");
    }
    // Another organisation's job is not found, as a job; its checkpoints cannot be loaded by id.
    const other = api(server.baseUrl, await server.createKey("other-org"));
    const theirs = await uploadJob(other, "theirs", [[0, "checkpoint-1/a.bin"]]);
    const r = await planOf({ load_checkpoint_config: { enabled: true, checkpoints: [{ typ: "baseten_latest_checkpoint", job_id: theirs.jobId }] } });
    assert.equal(r.status, 422);
    assert.match(r.body.message, /does not exist/);
  });
});
