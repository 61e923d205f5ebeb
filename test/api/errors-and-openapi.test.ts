import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestServer, type TestServer } from "../harness/server.js";
import { api, setupJob } from "../helpers/api.js";
import { seedSchemas } from "../helpers/spec.js";

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

describe("malformed input gets a 4xx JSON error, never a 500", () => {
  test("invalid JSON, wrong content types, wrong shapes, unknown routes, oversize bodies", async () => {
    const { key, project } = await setupJob(server, "errors");
    const client = api(server.baseUrl, key);
    const cases: [string, string, string | Buffer | undefined, Record<string, string>, number][] = [
      ["POST", "/v1/training_projects", "{not json", { "content-type": "application/json" }, 400],
      ["POST", "/v1/training_projects", "name=x", { "content-type": "application/x-www-form-urlencoded" }, 415],
      ["POST", "/v1/training_projects", "[]", { "content-type": "application/json" }, 400],
      ["POST", "/v1/training_projects", "null", { "content-type": "application/json" }, 400],
      ["POST", "/v1/training_projects", JSON.stringify({ training_project: { name: "x".repeat(2 << 20) } }), { "content-type": "application/json" }, 413],
      ["POST", `/v1/training_projects/${project.id}/jobs`, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", { "content-type": "application/json" }, 400],
      ["GET", "/v1/nope", undefined, {}, 404],
      ["GET", `/v1/training_projects/${"x".repeat(3000)}`, undefined, {}, 414],
      ["PATCH", "/v1/training_projects", "{}", { "content-type": "application/json" }, 404],
    ];
    for (const [method, path, body, headers, status] of cases) {
      const r = await client.call(method, path, body === undefined ? undefined : Buffer.from(body), headers);
      assert.equal(r.status, status, `${method} ${path.slice(0, 60)} ${String(body).slice(0, 30)}: ${JSON.stringify(r.body).slice(0, 200)}`);
      assert.equal(typeof r.body.message, "string");
      assert.ok(!JSON.stringify(r.body).includes("    at "), "no stack trace");
    }
  });

  test("a NUL byte in any id is a 404 like any unknown id (PostgreSQL cannot even compare it)", async () => {
    const { key, project, job } = await setupJob(server, "nul-ids");
    const client = api(server.baseUrl, key);
    const json = { "content-type": "application/json" };
    const cases: [string, string, string | undefined][] = [
      ["GET", "/v1/training_projects/%00", undefined],
      ["DELETE", "/v1/training_projects/a%00b", undefined],
      ["GET", "/v1/training_projects/%00/jobs", undefined],
      ["GET", `/v1/training_projects/${project.id}/jobs/%00`, undefined],
      ["GET", `/v1/training_projects/${project.id}/jobs/${job.id}%00/checkpoint_files`, undefined],
      ["PATCH", `/v1/training_projects/${project.id}/jobs/%00`, "{}"],
      ["POST", `/v1/training_projects/%00/jobs`, JSON.stringify({ training_job: {} })],
      ["DELETE", `/v1/training_projects/%00/jobs/${job.id}/uploads/x`, undefined],
      ["POST", `/v1/training_projects/${project.id}/jobs/${job.id}/uploads/%00/complete`, "{}"],
    ];
    for (const [method, path, body] of cases) {
      const r = await client.call(method, path, body === undefined ? undefined : Buffer.from(body), body === undefined ? {} : json);
      assert.equal(r.status, 404, `${method} ${path}: ${JSON.stringify(r.body)}`);
      assert.match(r.body.message, /not found/);
    }
    assert.equal((await api(server.baseUrl, null).get("/v1/training_projects/%00")).status, 401, "authentication still comes first");
  });
});

describe("GET /openapi.json", () => {
  test("is an OpenAPI 3.1 document whose checkpoint_files schemas match the seed's", async () => {
    const r = await api(server.baseUrl, null).get("/openapi.json");
    assert.equal(r.status, 200);
    assert.equal(r.body.openapi, "3.1.0");
    const schemas = r.body.components.schemas;
    for (const name of ["CheckpointFile", "GetTrainingJobCheckpointFilesResponseV1"] as const) {
      const ours = schemas[name];
      const seed = seedSchemas[name]!;
      assert.ok(ours, `${name} is in the document`);
      assert.deepEqual(Object.keys(ours.properties).sort(), Object.keys(seed.properties).sort(), `${name} properties`);
      assert.deepEqual([...ours.required].sort(), [...seed.required].sort(), `${name} required`);
      for (const [prop, seedProp] of Object.entries(seed.properties) as [string, any][]) {
        const ourProp = ours.properties[prop];
        if (seedProp.type) assert.equal(ourProp.type, seedProp.type, `${name}.${prop} type`);
        if (seedProp.anyOf) assert.deepEqual(ourProp.anyOf.map((s: any) => s.type), seedProp.anyOf.map((s: any) => s.type), `${name}.${prop} anyOf`);
      }
    }
    const path = r.body.paths["/v1/training_projects/{training_project_id}/jobs/{training_job_id}/checkpoint_files"];
    assert.ok(path?.get, "the checkpoint_files endpoint is documented");
    const params = path.get.parameters.map((p: any) => `${p.in}:${p.name}`).sort();
    assert.deepEqual(params, ["path:training_job_id", "path:training_project_id", "query:page_size", "query:page_token"]);
    assert.ok(r.body.paths["/v1/training_projects/{training_project_id}/jobs/{training_job_id}/checkpoint_files/{node_rank}/{*}"] ?? Object.keys(r.body.paths).some((p) => p.includes("{node_rank}")), "upload route documented");
  });
});
