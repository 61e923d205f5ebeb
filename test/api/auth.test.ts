import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestServer, type TestServer } from "../harness/server.js";
import { api, setupJob } from "../helpers/api.js";

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

describe("API keys", () => {
  test("both Authorization schemes are accepted", async () => {
    const key = await server.createKey("org-schemes");
    for (const scheme of ["Api-Key", "Bearer", "api-key", "bearer"]) {
      const r = await api(server.baseUrl, key, scheme).get("/v1/training_projects");
      assert.equal(r.status, 200, scheme);
    }
  });

  const bad: [string, Record<string, string>][] = [
    ["missing header", {}],
    ["empty header", { authorization: "" }],
    ["scheme only", { authorization: "Api-Key" }],
    ["unknown scheme", { authorization: "Basic dXNlcjpwYXNz" }],
    ["not a ckpt key", { authorization: "Api-Key abc.def" }],
    ["well-formed but unknown", { authorization: `Api-Key ckpt_aaaaaaaaaaaa.${"A".repeat(43)}` }],
    ["two keys", { authorization: "Api-Key a b" }],
  ];
  for (const [what, headers] of bad) {
    test(`401 with a message for ${what}`, async () => {
      const r = await api(server.baseUrl, null).call("GET", "/v1/training_projects", undefined, headers);
      assert.equal(r.status, 401);
      assert.equal(typeof r.body.message, "string");
    });
  }

  test("a key with a right id but a wrong secret is refused", async () => {
    const key = await server.createKey("org-wrong-secret");
    const tampered = key.slice(0, -1) + (key.endsWith("A") ? "B" : "A");
    assert.equal((await api(server.baseUrl, tampered).get("/v1/training_projects")).status, 401);
  });

  test("a revoked key stops working on the very next request", async () => {
    const key = await server.createKey("org-revoke");
    const client = api(server.baseUrl, key);
    assert.equal((await client.get("/v1/training_projects")).status, 200);
    const keyId = /^ckpt_([a-z0-9]+)\./.exec(key)![1]!;
    assert.equal(await server.service.metadata.revokeApiKey(keyId), true);
    assert.equal((await client.get("/v1/training_projects")).status, 401);
  });

  test("keys are stored hashed: the secret appears nowhere in the database file", async () => {
    const key = await server.createKey("org-hashed");
    const { readFileSync, readdirSync } = await import("node:fs");
    const secret = key.split(".")[1]!;
    for (const name of readdirSync(server.dataDir).filter((n) => n.startsWith("ckpt.sqlite")))
      assert.ok(!readFileSync(`${server.dataDir}/${name}`).includes(secret), `${name} holds the plaintext secret`);
  });
});

describe("tenancy: another organisation's things do not exist", () => {
  test("every route answers 404 for a foreign project or job, exactly as for a missing one", async () => {
    const a = await setupJob(server, "tenant-a");
    const b = await setupJob(server, "tenant-b");
    assert.equal((await a.upload(0, "secret.bin", Buffer.from("a's data"))).status, 201);
    const foreign = [
      ["GET", `/v1/training_projects/${a.project.id}`],
      ["DELETE", `/v1/training_projects/${a.project.id}`],
      ["GET", `/v1/training_projects/${a.project.id}/jobs`],
      ["POST", `/v1/training_projects/${a.project.id}/jobs`],
      ["GET", a.jobPath],
      ["PATCH", a.jobPath],
      ["DELETE", a.jobPath],
      ["POST", `${a.jobPath}/stop`],
      ["GET", `${a.jobPath}/checkpoints`],
      ["GET", `${a.jobPath}/checkpoint_files`],
      ["PUT", `${a.jobPath}/checkpoint_files/0/secret.bin`],
    ];
    for (const [method, path] of foreign) {
      const body = method === "PUT" ? Buffer.from("overwrite") : method === "PATCH" ? { priority: 1 } : method === "POST" && path!.endsWith("/jobs") ? { training_job: {} } : method === "POST" ? {} : undefined;
      const asB = await b.client.call(method!, path!, body);
      const missing = await b.client.call(method!, path!.replace(a.project.id, "zzzzzzzz"), body);
      assert.equal(asB.status, 404, `${method} ${path} as another tenant`);
      // Alike but for the request id, which is each request's own.
      const { request_id: idAsB, ...bodyAsB } = asB.body;
      const { request_id: idMissing, ...bodyMissing } = missing.body;
      assert.notEqual(idAsB, idMissing);
      assert.deepEqual(bodyAsB, bodyMissing, `${method} ${path}: foreign and missing look alike`);
    }
    // B's own project of the same name is a different project.
    const list = await b.client.get("/v1/training_projects");
    assert.deepEqual(list.body.training_projects.map((p: any) => p.id), [b.project.id]);
    // Nothing of A's changed.
    const files = await a.client.get(`${a.jobPath}/checkpoint_files`);
    assert.equal(files.body.total_count, 1);
    assert.equal(await (await fetch(files.body.presigned_urls[0].url)).text(), "a's data");
  });
});
