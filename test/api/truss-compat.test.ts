// Baseten's own client, `truss` (basetenlabs/truss), against ckpt: each test sends exactly the
// requests truss sends for one command — the same paths, bodies, query parameters, paging and
// stop conditions, read from truss/remote/baseten/api.py, rest_client.py, truss/cli/train/core.py,
// common.py, checkpoint_viewer.py and train_commands.py — and asserts the fields truss reads.
// Every response is validated against Baseten's OpenAPI document.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { startTestServer, type TestServer } from "../harness/server.js";
import { sha256 } from "../helpers/api.js";
import { assertBasetenShape } from "../helpers/spec.js";

/** truss's ACTIVE_JOB_STATUSES (truss/cli/train/core.py). */
const ACTIVE_JOB_STATUSES = ["TRAINING_JOB_RUNNING", "TRAINING_JOB_CREATED", "TRAINING_JOB_DEPLOYING"];

/** A small page size on the server, so truss's page_size=1000 walk crosses pages with few files. */
const SERVER_MAX_PAGE_SIZE = 7;

/**
 * truss's RestAPIClient: `Authorization: Api-Key <key>` on every call, `requests.post(json=body)`
 * (so a JSON body, nulls included), `requests.get(params=...)`; a 4xx prints the server's
 * `message` and raises, which `call` reports as the status.
 */
function trussRest(baseUrl: string, apiKey: string) {
  const headers = { Authorization: `Api-Key ${apiKey}` };
  const call = async (method: string, path: string, options: { body?: unknown; params?: Record<string, string> } = {}) => {
    const query = options.params ? `?${new URLSearchParams(options.params)}` : "";
    const response = await fetch(`${baseUrl}/${path}${query}`, {
      method,
      headers: options.body === undefined ? headers : { ...headers, "Content-Type": "application/json" },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined };
  };
  const ok = async (method: "GET" | "POST", path: string, options: { body?: unknown; params?: Record<string, string> } = {}) => {
    const r = await call(method, path, options);
    assert.equal(r.status, 200, `${method} ${path}: ${JSON.stringify(r.body)}`);
    return r.body;
  };
  return {
    call,
    /** BasetenApi.search_training_jobs: every argument is sent, None as null. */
    async searchTrainingJobs(
      args: { statuses?: string[] | null; project_id?: string | null; job_id?: string | null; order_by?: { field: string; order: string }[] } = {},
    ): Promise<any[]> {
      const body = await ok("POST", "v1/training_jobs/search", {
        body: {
          statuses: args.statuses ?? null,
          project_id: args.project_id ?? null,
          job_id: args.job_id ?? null,
          order_by: args.order_by ?? [{ field: "created_at", order: "desc" }],
        },
      });
      assertBasetenShape("SearchTrainingJobsResponseV1", body);
      return body.training_jobs;
    },
    async listTrainingProjects(): Promise<any[]> {
      const body = await ok("GET", "v1/training_projects");
      assertBasetenShape("ListTrainingProjectsResponseV1", body);
      return body.training_projects;
    },
    async listTrainingJobCheckpoints(projectId: string, jobId: string): Promise<any> {
      const body = await ok("GET", `v1/training_projects/${projectId}/jobs/${jobId}/checkpoints`);
      assertBasetenShape("GetTrainingJobCheckpointsResponseV1", body);
      return body;
    },
    /**
     * get_training_job_checkpoint_presigned_url: page_size as a string, no page_token on the first
     * request, then str(next_page_token) while it is truthy, at most 1000 requests.
     */
    async getTrainingJobCheckpointPresignedUrl(projectId: string, jobId: string, pageSize = 100): Promise<{ files: any[]; requests: number }> {
      const files: any[] = [];
      let pageToken: unknown = null;
      let requests = 0;
      for (let iteration = 0; iteration < 1000; iteration++) {
        const params: Record<string, string> = { page_size: String(pageSize) };
        if (pageToken) params.page_token = String(pageToken);
        const body = await ok("GET", `v1/training_projects/${projectId}/jobs/${jobId}/checkpoint_files`, { params });
        requests++;
        assertBasetenShape("GetTrainingJobCheckpointFilesResponseV1", body);
        files.push(...(body.presigned_urls ?? []));
        pageToken = body.next_page_token;
        if (!pageToken) break;
      }
      return { files, requests };
    },
    async stopTrainingJob(projectId: string, jobId: string): Promise<any> {
      const body = await ok("POST", `v1/training_projects/${projectId}/jobs/${jobId}/stop`, { body: {} });
      assertBasetenShape("StopTrainingJobResponseV1", body);
      return body.training_job;
    },
  };
}
type Truss = ReturnType<typeof trussRest>;

/** What truss's display_training_job and display_training_projects read from a job. */
function assertDisplayable(job: any): void {
  assertBasetenShape("TrainingJobV1", job);
  for (const field of ["id", "current_status", "created_at", "updated_at"]) assert.equal(typeof job[field], "string", field);
  assert.equal(typeof job.training_project.id, "string");
  assert.equal(typeof job.training_project.name, "string");
  assert.equal(typeof job.instance_type.name, "string");
  // truss reads job.get("user", {}).get("email", ""): null in place of the object crashes it.
  assert.equal(typeof job.user, "object");
  assert.notEqual(job.user, null, "user is an object, never null");
  assert.ok(job.user.email === null || typeof job.user.email === "string");
}

let server: TestServer;
let truss: Truss;
let trussKey: string;
let stranger: Truss;
let projectA: any;
let projectB: any;
/** Oldest first: a1 (completed, with checkpoints), a2 (running), b1 (in project B). */
let a1: any;
let a2: any;
let b1: any;
const files: Record<string, Buffer> = {};

before(async () => {
  server = await startTestServer({ env: { CKPT_MAX_PAGE_SIZE: String(SERVER_MAX_PAGE_SIZE) } });
  const key = await server.createKey("truss-org", { email: "ada@example.com" });
  trussKey = key;
  truss = trussRest(server.baseUrl, key);
  stranger = trussRest(server.baseUrl, await server.createKey("other-org"));
  const setup = trussRest(server.baseUrl, key);
  const post = async (path: string, body: unknown) => (await setup.call("POST", path, { body })).body;
  projectA = (await post("v1/training_projects", { training_project: { name: "llama sft" } })).training_project;
  projectB = (await post("v1/training_projects", { training_project: { name: "mistral" } })).training_project;
  a1 = (await post(`v1/training_projects/${projectA.id}/jobs`, { training_job: { name: "a1" } })).training_job;
  a2 = (await post(`v1/training_projects/${projectA.id}/jobs`, { training_job: { name: "a2" } })).training_job;
  b1 = (await post(`v1/training_projects/${projectB.id}/jobs`, { training_job: { name: "b1" } })).training_job;
  const patch = async (job: any, project: any, body: unknown) => {
    const r = await fetch(`${server.baseUrl}/v1/training_projects/${project.id}/jobs/${job.id}`, {
      method: "PATCH",
      headers: { Authorization: `Api-Key ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    assert.equal(r.status, 200);
  };
  await patch(a1, projectA, { current_status: "TRAINING_JOB_COMPLETED" });
  await patch(a2, projectA, { current_status: "TRAINING_JOB_RUNNING" });
  await patch(b1, projectB, { current_status: "TRAINING_JOB_FAILED", error_message: "OOM" });
  // Two checkpoints over two ranks, more files than one server page holds.
  for (let i = 0; i < 2 * SERVER_MAX_PAGE_SIZE + 3; i++) {
    const name = `checkpoint-${i % 2 === 0 ? 100 : 200}/shard-${i}.bin`;
    files[`${i % 2}/${name}`] = Buffer.from(`bytes of ${name} on rank ${i % 2}`);
  }
  for (const [key2, bytes] of Object.entries(files)) {
    const [rank, ...rest] = key2.split("/");
    const r = await fetch(
      `${server.baseUrl}/v1/training_projects/${projectA.id}/jobs/${a1.id}/checkpoint_files/${rank}/${rest.map(encodeURIComponent).join("/")}`,
      { method: "PUT", headers: { Authorization: `Api-Key ${key}` }, body: bytes },
    );
    assert.equal(r.status, 201);
  }
});
after(() => server.stop());

describe("truss against ckpt", () => {
  test("jobs carry the creating key's owner email as user; a key without one gives {email: null}", async () => {
    const [job] = await truss.searchTrainingJobs({ job_id: a1.id });
    assert.deepEqual(job.user, { email: "ada@example.com" });
    const anonymous = trussRest(server.baseUrl, await server.createKey("truss-org"));
    const created = (await anonymous.call("POST", `v1/training_projects/${projectB.id}/jobs`, { body: { training_job: {} } })).body.training_job;
    assertBasetenShape("TrainingJobV1", created);
    assert.deepEqual(created.user, { email: null });
    const [found] = await truss.searchTrainingJobs({ job_id: created.id });
    assert.deepEqual(found.user, { email: null });
    assert.equal((await anonymous.call("DELETE", `v1/training_projects/${projectB.id}/jobs/${created.id}`)).status, 200);
  });

  test("`truss train view` with no arguments: projects, then the active jobs", async () => {
    // display_training_projects: id, name, created_at, updated_at, (latest_job or {}).get("id"/"current_status")
    const projects = await truss.listTrainingProjects();
    assert.deepEqual(projects.map((p) => p.name).sort(), ["llama sft", "mistral"]);
    for (const p of projects) {
      for (const field of ["id", "name", "created_at", "updated_at"]) assert.equal(typeof p[field], "string");
      const latest = p.latest_job ?? {};
      if (latest.id) assertDisplayable(latest);
    }
    const active = await truss.searchTrainingJobs({ statuses: ACTIVE_JOB_STATUSES });
    assert.deepEqual(active.map((j) => j.id), [a2.id]);
    active.forEach(assertDisplayable);
  });

  test("`truss train view --job-id J`: a search by job id (ascending), then that job's checkpoints", async () => {
    const jobs = await truss.searchTrainingJobs({ project_id: null, job_id: a1.id, order_by: [{ field: "created_at", order: "asc" }] });
    assert.equal(jobs.length, 1, "exactly one: truss then shows its checkpoints");
    assertDisplayable(jobs[0]);
    const checkpoints = await truss.listTrainingJobCheckpoints(jobs[0].training_project.id, jobs[0].id);
    assert.deepEqual(checkpoints.checkpoints.map((c: any) => c.checkpoint_id).sort(), ["checkpoint-100", "checkpoint-200"]);
  });

  test("`truss train view --project NAME`: the name resolved from the project list, then its jobs oldest first", async () => {
    // _maybe_resolve_project_id_from_id_or_name → fetch_project_by_name_or_id: ids first, then names
    const projects = await truss.listTrainingProjects();
    const byId = new Map(projects.map((p) => [p.id, p]));
    const byName = new Map(projects.map((p) => [p.name, p]));
    const resolved = byId.get("llama sft") ?? byName.get("llama sft");
    assert.equal(resolved.id, projectA.id);
    const jobs = await truss.searchTrainingJobs({ project_id: resolved.id, order_by: [{ field: "created_at", order: "asc" }] });
    assert.deepEqual(jobs.map((j) => j.id), [a1.id, a2.id]);
    jobs.forEach(assertDisplayable);
    assert.equal(jobs.find((j) => j.id === a1.id).current_status, "TRAINING_JOB_COMPLETED");
  });

  test("`truss train get_checkpoint_urls` (latest job, and --job-id): every file's URL over all pages", async () => {
    // _get_latest_job: search ordered created_at desc, first job
    const [latest] = await truss.searchTrainingJobs({ order_by: [{ field: "created_at", order: "desc" }] });
    assert.equal(latest.id, b1.id, "newest job of the organisation");
    assert.equal(latest.error_message, "OOM");
    // _get_job_by_job_id, then page_size=1000 until next_page_token is falsy
    const [job] = await truss.searchTrainingJobs({ job_id: a1.id });
    const { files: listed, requests } = await truss.getTrainingJobCheckpointPresignedUrl(job.training_project.id, job.id, 1000);
    assert.equal(requests, Math.ceil(Object.keys(files).length / SERVER_MAX_PAGE_SIZE), "truss walks every page and stops on the last");
    assert.deepEqual(listed.map((f) => `${f.node_rank}/${f.relative_file_name}`).sort(), Object.keys(files).sort());
    // the output file is json.dump({job, checkpoint_artifacts}); the URLs give the bytes (requests.get)
    for (const f of listed.slice(0, 3)) {
      const r = await fetch(f.url);
      assert.equal(r.status, 200);
      assert.equal(sha256(Buffer.from(await r.arrayBuffer())), sha256(files[`${f.node_rank}/${f.relative_file_name}`]!));
    }
    // "No checkpoints found for this training job." is truss's answer to an empty list
    const empty = await truss.getTrainingJobCheckpointPresignedUrl(projectA.id, a2.id, 1000);
    assert.deepEqual(empty, { files: [], requests: 1 });
  });

  test("`truss train checkpoints list` without a job id: the most recent job of the project, then its checkpoints and files", async () => {
    // common.get_most_recent_job: search(project_id, job_id) in the default order; several → newest by created_at
    const jobs = await truss.searchTrainingJobs({ project_id: projectA.id, job_id: null });
    assert.deepEqual(jobs.map((j) => j.id), [a2.id, a1.id]);
    const newest = [...jobs].sort((x, y) => (x.created_at < y.created_at ? 1 : x.created_at > y.created_at ? -1 : 0))[0];
    assert.ok([a1.id, a2.id].includes(newest.id));
    // the viewer on a job with checkpoints: checkpoint_id, checkpoint_type, base_model, size_bytes, created_at
    const raw = await truss.listTrainingJobCheckpoints(projectA.id, a1.id);
    for (const c of raw.checkpoints) {
      assert.equal(typeof c.checkpoint_id, "string");
      assert.equal(typeof c.checkpoint_type, "string");
      assert.ok(c.base_model === null || typeof c.base_model === "string");
      assert.equal(typeof c.size_bytes, "number");
      assert.equal(typeof c.created_at, "string");
    }
    const sizeOf = (prefix: string) => Object.entries(files).filter(([k]) => k.split("/")[1] === prefix).reduce((n, [, b]) => n + b.length, 0);
    assert.equal(raw.checkpoints.find((c: any) => c.checkpoint_id === "checkpoint-100").size_bytes, sizeOf("checkpoint-100"));
    // the interactive explorer: every file of the job at page_size=1000, grouped by relative_file_name
    const { files: listed } = await truss.getTrainingJobCheckpointPresignedUrl(projectA.id, a1.id, 1000);
    assert.ok(listed.some((f) => f.relative_file_name.startsWith("checkpoint-200/")));
    for (const f of listed) {
      assert.equal(typeof f.url, "string");
      assert.equal(typeof f.size_bytes, "number");
    }
  });

  test("`truss train download --job-id J`: the job found by search; ckpt keeps no source, so no artifact URLs", async () => {
    const [job] = await truss.searchTrainingJobs({ job_id: a1.id });
    const r = await truss.call("GET", `v1/training_projects/${job.training_project.id}/jobs/${job.id}/download`);
    assert.equal(r.status, 200);
    assertBasetenShape("DownloadTrainingJobResponseV1", r.body);
    assert.deepEqual(r.body, { artifact_presigned_urls: [] });
    // ... which a client tells apart from an unknown job, or another organisation's: those are 404
    const unknown = await truss.call("GET", `v1/training_projects/${projectA.id}/jobs/nosuchjob/download`);
    assert.equal(unknown.status, 404);
    assert.equal(typeof unknown.body.message, "string");
    assert.equal((await stranger.call("GET", `v1/training_projects/${projectA.id}/jobs/${a1.id}/download`)).status, 404);
  });

  test("`truss train recreate --job-id J` looks the job up by search (project and job ids from the result)", async () => {
    const jobs = await truss.searchTrainingJobs({ job_id: b1.id });
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0].training_project.id, projectB.id);
    assert.equal(jobs[0].id, b1.id);
    // "No training job found with ID" is truss's answer to an empty list: an unknown id is no error
    assert.deepEqual(await truss.searchTrainingJobs({ job_id: "nosuchjob" }), []);
  });

  test("`truss train stop` (no ids, then --all): the one active job found by search, stopped with an empty body", async () => {
    // _get_active_job(project_id=None, job_id=None): exactly one active job, or truss refuses
    const active = await truss.searchTrainingJobs({ statuses: ACTIVE_JOB_STATUSES, project_id: null, job_id: null });
    assert.equal(active.length, 1);
    const stopped = await truss.stopTrainingJob(active[0].training_project.id, active[0].id);
    assert.equal(stopped.current_status, "TRAINING_JOB_STOPPED");
    assertDisplayable(stopped);
    // stop_all_jobs(project_id): nothing active any more → "No active jobs found."
    assert.deepEqual(await truss.searchTrainingJobs({ project_id: projectA.id, statuses: ACTIVE_JOB_STATUSES }), []);
  });

  test("requests addressed to http://api.localhost:8000 (truss's REST base for remote_url http://localhost:8000) are served", async () => {
    // truss maps remote_url through API_URL_MAPPING; the README's recipe makes it send
    // `Host: api.localhost:8000` to ckpt. Nothing in ckpt may depend on the Host it is called by.
    const { port } = new URL(server.baseUrl);
    const viaTrussHost = (method: string, path: string, body?: unknown) =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        const req = httpRequest(
          { host: "127.0.0.1", port, method, path,
            headers: { host: "api.localhost:8000", authorization: `Api-Key ${trussKey}`, ...(body ? { "content-type": "application/json" } : {}) } },
          (res) => {
            let text = "";
            res.setEncoding("utf8").on("data", (d) => (text += d)).on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
          },
        );
        req.on("error", reject);
        req.end(body === undefined ? undefined : JSON.stringify(body));
      });
    const found = await viaTrussHost("POST", "/v1/training_jobs/search", { statuses: null, project_id: null, job_id: a1.id, order_by: [{ field: "created_at", order: "desc" }] });
    assert.equal(found.status, 200, JSON.stringify(found.body));
    assertBasetenShape("SearchTrainingJobsResponseV1", found.body);
    const [job] = found.body.training_jobs;
    assert.equal(job.id, a1.id);
    const page = await viaTrussHost("GET", `/v1/training_projects/${job.training_project.id}/jobs/${job.id}/checkpoint_files?page_size=1000`);
    assert.equal(page.status, 200);
    assertBasetenShape("GetTrainingJobCheckpointFilesResponseV1", page.body);
    // presigned URLs name --public-url, never the Host a request came in by
    assert.ok(page.body.presigned_urls.length > 0);
    for (const f of page.body.presigned_urls) assert.ok(!f.url.includes("api.localhost"), f.url);
  });

  test("a search sees only the caller's organisation", async () => {
    assert.deepEqual(await stranger.searchTrainingJobs(), []);
    assert.deepEqual(await stranger.searchTrainingJobs({ job_id: a1.id }), []);
    assert.deepEqual(await stranger.searchTrainingJobs({ project_id: projectA.id }), []);
  });
});

describe("POST /v1/training_jobs/search refuses what it cannot honour", () => {
  const cases: [string, unknown, RegExp][] = [
    ["an unknown field", { job_ids: ["x"] }, /job_ids/],
    ["an unknown status", { statuses: ["TRAINING_JOB_RUNING"] }, /unknown status "TRAINING_JOB_RUNING"/],
    ["an unknown order field", { order_by: [{ field: "updated_at", order: "desc" }] }, /cannot order by "updated_at".*created_at/],
    ["an unknown order direction", { order_by: [{ field: "created_at", order: "descending" }] }, /asc.*desc/],
    ["an order entry without its direction", { order_by: [{ field: "created_at" }] }, /order/],
    ["a status that is not a string", { statuses: [1] }, /statuses/],
    ["a body that is not an object", [], /body/],
  ];
  for (const [what, body, message] of cases)
    test(`400 with a message for ${what}`, async () => {
      const r = await truss.call("POST", "v1/training_jobs/search", { body });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.match(r.body.message, message);
      assert.equal(r.body.code, "BAD_REQUEST");
    });

  test("an empty body is every job, newest first (every filter is optional)", async () => {
    const r = await truss.call("POST", "v1/training_jobs/search", { body: {} });
    assert.equal(r.status, 200);
    assertBasetenShape("SearchTrainingJobsResponseV1", r.body);
    assert.deepEqual(
      r.body.training_jobs.map((j: any) => j.id),
      (await truss.searchTrainingJobs({ order_by: [{ field: "created_at", order: "asc" }] })).map((j) => j.id).reverse(),
    );
  });

  test("without a key it is a 401", async () => {
    const r = await fetch(`${server.baseUrl}/v1/training_jobs/search`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(r.status, 401);
  });
});
