import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestServer, type TestServer } from "../harness/server.js";
import { api, setupJob } from "../helpers/api.js";
import { parseRawResponse, rawConnection } from "./support.js";

/** Limits with clear errors (413 for JSON bodies and 414 for long ids are pinned in test/api). */
let server: TestServer;
before(async () => {
  server = await startTestServer({ env: { CKPT_MAX_FILES_PER_JOB: "3" } });
});
after(() => server.stop());

/** Sends raw bytes and reads the whole response; for requests fetch() would refuse or rewrite. */
async function raw(request: string): Promise<ReturnType<typeof parseRawResponse>> {
  const c = rawConnection(server.baseUrl);
  c.socket.end(request);
  await c.closed;
  return parseRawResponse(c.received());
}

function assertJsonError(r: { status: number; headers: Record<string, string>; body: any }, status: number, message: RegExp) {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.match(r.headers["content-type"] ?? "", /application\/json/);
  assert.match(r.body.message, message);
  assert.equal(r.headers["x-content-type-options"], "nosniff", "security headers on errors answered outside the routes too");
}

describe("limits", () => {
  test("more files than the job limit: a 409 that says so; replacements still work; nothing extra is kept", async () => {
    const { upload, client, jobPath } = await setupJob(server, "files-limit");
    for (const name of ["a", "b", "c"]) assert.equal((await upload(0, name, Buffer.from(name))).status, 201);
    const fourth = await upload(1, "d", Buffer.from("d"));
    assert.equal(fourth.status, 409);
    assert.equal(fourth.body.code, "TOO_MANY_FILES");
    assert.match(fourth.body.message, /at most 3 files/);
    assert.equal((await upload(0, "b", Buffer.from("b2"))).status, 201, "replacing a file is not a new file");
    const listed = await client.get(`${jobPath}/checkpoint_files`);
    assert.deepEqual(listed.body.presigned_urls.map((f: any) => f.relative_file_name).sort(), ["a", "b", "c"]);
  });

  test("headers over the limit: 431 with a JSON message; the server answers the next request", async () => {
    const r = await raw(`GET /v1/training_projects HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`);
    assertJsonError(r, 431, /headers are too large/);
    assert.equal((await fetch(`${server.baseUrl}/healthz`)).status, 200);
  });

  test("a URL longer than the header limit: 431 with a JSON message", async () => {
    const r = await raw(`GET /v1/training_projects?page_size=${"1".repeat(20_000)} HTTP/1.1\r\nhost: x\r\n\r\n`);
    assertJsonError(r, 431, /too large/);
  });

  test("malformed percent-encoding in a path: a 400 JSON error with the security headers", async () => {
    const { key, project } = await setupJob(server, "bad-url");
    const r = await raw(`GET /v1/training_projects/${project.id}/jobs/%zz HTTP/1.1\r\nhost: x\r\nauthorization: Api-Key ${key}\r\nconnection: close\r\n\r\n`);
    assertJsonError(r, 400, /percent-encoding/);
  });

  test("an over-long path parameter: a 414 JSON error with the security headers", async () => {
    const r = await raw(`GET /v1/training_projects/${"x".repeat(3000)} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    assertJsonError(r, 414, /too long/);
  });

  test("JSON nested deeper than 64 levels is a 400, not a stack overflow when the job spec is stored", async () => {
    const { client, project } = await setupJob(server, "deep-json");
    for (const depth of [10_000, 65]) {
      const body = `{"training_job":{"x":${"[".repeat(depth)}${"]".repeat(depth)}}}`;
      const r = await client.call("POST", `/v1/training_projects/${project.id}/jobs`, Buffer.from(body), { "content-type": "application/json" });
      assert.equal(r.status, 400, `depth ${depth}: ${JSON.stringify(r.body).slice(0, 200)}`);
      assert.match(r.body.message, /nests deeper than 64/);
    }
    const ok = `{"training_job":{"x":${"[".repeat(60)}${"]".repeat(60)},"s":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\""}}`;
    const r = await client.call("POST", `/v1/training_projects/${project.id}/jobs`, Buffer.from(ok), { "content-type": "application/json" });
    assert.equal(r.status, 200, "brackets inside strings do not count");
    assert.equal((await api(server.baseUrl, null).get("/healthz")).status, 200);
  });
});
