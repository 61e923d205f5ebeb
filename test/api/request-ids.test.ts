import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import pino from "pino";
import type { FastifyInstance } from "fastify";
import { issueKey } from "../../src/domain/keys.js";
import { buildApp, logSerializers } from "../../src/server/app.js";
import { openRuntime, type Runtime } from "../../src/server/runtime.js";
import { freePort } from "../harness/server.js";
import { startStores, type TestStores } from "../harness/stores.js";
import { api } from "../helpers/api.js";

/** Request ids: taken from X-Request-Id when short and printable, else generated; echoed, logged, in error bodies. */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
let stores: TestStores;
let runtime: Runtime;
let app: FastifyInstance;
let baseUrl: string;
let key: string;
const logLines: Record<string, unknown>[] = [];

before(async () => {
  stores = await startStores();
  const port = await freePort();
  const config = stores.config({ CKPT_PORT: String(port) });
  runtime = await openRuntime(config);
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n")) if (line) logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: "info", serializers: logSerializers }, sink);
  app = await buildApp({ service: runtime.service, signer: runtime.signer, servedBlobs: runtime.servedBlobs, jsonBodyLimit: config.jsonBodyLimit, logger });
  await app.listen({ host: "127.0.0.1", port });
  baseUrl = `http://127.0.0.1:${port}`;
  const org = await runtime.service.metadata.ensureOrganisation("acme");
  const issued = issueKey();
  await runtime.service.metadata.insertApiKey({ keyId: issued.keyId, orgId: org.id, secretHash: issued.secretHash });
  key = issued.plaintext;
});
after(async () => {
  const closing = app.close();
  app.server.closeAllConnections();
  await closing;
  await runtime.close();
  await stores.stop();
});

describe("request ids", () => {
  test("a short printable X-Request-Id is kept: echoed, in the error body and in every log line of the request", async () => {
    const id = "lb-7f3a.trace:42";
    const res = await fetch(`${baseUrl}/v1/training_projects/nope`, { headers: { authorization: `Api-Key ${key}`, "x-request-id": id } });
    assert.equal(res.status, 404);
    assert.equal(res.headers.get("x-request-id"), id);
    assert.deepEqual(await res.json(), { message: "training project not found", code: "NOT_FOUND", request_id: id });
    const lines = logLines.filter((l) => l.reqId === id);
    assert.ok(lines.length >= 2, "incoming and completed lines at least");
    assert.ok(lines.some((l) => l.msg === "request completed"));
  });

  for (const [what, given] of [
    ["too long", "x".repeat(129)],
    ["with a space", "a b"],
    ["with a quote", 'a"b'],
    ["empty", ""],
  ] as const)
    test(`an X-Request-Id ${what} is replaced by a generated one`, async () => {
      const res = await fetch(`${baseUrl}/v1/training_projects`, { headers: { "x-request-id": given } });
      assert.equal(res.status, 401);
      const id = res.headers.get("x-request-id")!;
      assert.match(id, UUID);
      assert.equal(((await res.json()) as { request_id: string }).request_id, id);
    });

  test("without one each request gets its own, also on success and on validation errors", async () => {
    const client = api(baseUrl, key);
    const a = await client.get("/v1/training_projects");
    const b = await client.get("/v1/training_projects");
    assert.equal(a.status, 200);
    assert.match(a.headers.get("x-request-id")!, UUID);
    assert.notEqual(a.headers.get("x-request-id"), b.headers.get("x-request-id"));
    assert.equal(a.body.request_id, undefined, "success bodies keep their Baseten shape");
    const bad = await client.post("/v1/training_projects", { training_project: { name: 42 } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.request_id, bad.headers.get("x-request-id"));
  });

  test("errors raised before any route runs carry it too (malformed percent-encoding)", async () => {
    const res = await fetch(`${baseUrl}/v1/training_projects/%zz`, { headers: { "x-request-id": "early-1" } });
    assert.equal(res.status, 400);
    assert.equal(res.headers.get("x-request-id"), "early-1");
    assert.equal(((await res.json()) as { request_id: string }).request_id, "early-1");
  });

  test("downloads (answered before Fastify routing) echo the id and put it in error bodies and log lines", async (t) => {
    if (stores.backend !== "sqlite-local") return t.skip("on S3 downloads go to the object store, not to ckpt");
    const client = api(baseUrl, key);
    const project = (await client.post("/v1/training_projects", { training_project: { name: "p" } })).body.training_project;
    const job = (await client.post(`/v1/training_projects/${project.id}/jobs`, { training_job: {} })).body.training_job;
    const put = await client.put(`/v1/training_projects/${project.id}/jobs/${job.id}/checkpoint_files/0/a.bin`, Buffer.from("abc"));
    const ok = await fetch(put.body.url, { headers: { "x-request-id": "dl-1" } });
    assert.equal(await ok.text(), "abc");
    assert.equal(ok.headers.get("x-request-id"), "dl-1");
    const tampered = await fetch(put.body.url.replace(/X-Ckpt-Signature=[^&]+/, "X-Ckpt-Signature=AAAA"), { headers: { "x-request-id": "dl-2" } });
    assert.equal(tampered.status, 403);
    assert.equal(tampered.headers.get("x-request-id"), "dl-2");
    assert.equal(((await tampered.json()) as { request_id: string }).request_id, "dl-2");
    assert.ok(logLines.some((l) => l.reqId === "dl-1" && l.msg === "request completed"));
    assert.ok(!JSON.stringify(logLines).includes("X-Ckpt-Signature="), "no URL signature in the log");
  });
});
