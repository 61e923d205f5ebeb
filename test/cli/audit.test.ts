import assert from "node:assert/strict";
import { test } from "node:test";
import { runCli, startTestServer } from "../harness/server.js";
import { api } from "../helpers/api.js";

test("ckpt admin audit: key changes, deletes and a URL-secret rotation, with who and when, never a secret", async (t) => {
  const server = await startTestServer();
  t.after(() => server.stop());
  const admin = async (...args: string[]) => {
    const result = await runCli(["admin", ...args, "--data-dir", server.dataDir], { env: server.stores.env });
    assert.equal(result.code, 0, `ckpt admin ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };

  const key = (await admin("create-key", "--org", "acme")).trim();
  const keyId = /^ckpt_([a-z0-9]+)\./.exec(key)![1]!;
  const client = api(server.baseUrl, key);
  const project = (await client.post("/v1/training_projects", { training_project: { name: "kept" } })).body.training_project;
  const job = (await client.post(`/v1/training_projects/${project.id}/jobs`, { training_job: {} })).body.training_job;
  assert.equal((await client.put(`/v1/training_projects/${project.id}/jobs/${job.id}/checkpoint_files/0/a.bin`, Buffer.from("a"))).status, 201);
  assert.equal((await client.del(`/v1/training_projects/${project.id}/jobs/${job.id}`)).status, 200);
  const doomed = (await client.post("/v1/training_projects", { training_project: { name: "doomed" } })).body.training_project;
  await client.post(`/v1/training_projects/${doomed.id}/jobs`, { training_job: {} });
  assert.equal((await client.del(`/v1/training_projects/${doomed.id}`)).status, 200);
  // A delete that finds nothing changes nothing and is not recorded.
  assert.equal((await client.del(`/v1/training_projects/${doomed.id}`)).status, 404);
  await admin("revoke-key", keyId);
  await admin("rotate-url-secret");

  const entries = JSON.parse(await admin("audit", "-o", "json")) as any[];
  assert.deepEqual(
    entries.map((e) => [e.action, e.subject, e.key_id]),
    [
      ["api_key.created", keyId, null],
      ["job.deleted", job.id, keyId],
      ["project.deleted", doomed.id, keyId],
      ["api_key.revoked", keyId, null],
      ["url_secret.rotated", entries[4]?.subject, null],
    ],
  );
  assert.deepEqual(entries[1].details, { project_id: project.id });
  assert.deepEqual(entries[2].details, { jobs: 1 });
  assert.equal(entries[1].actor, `key ${keyId}`);
  assert.match(entries[0].actor, /^admin CLI \(.+@.+\)$/);
  assert.equal(entries[1].org_id, entries[0].org_id, "the organisation is recorded");
  for (let i = 1; i < entries.length; i++) assert.ok(entries[i].at >= entries[i - 1].at && entries[i].id > entries[i - 1].id, "oldest first");

  const secret = key.split(".")[1]!;
  const jsonl = await admin("audit", "-o", "jsonl");
  const table = await admin("audit");
  assert.equal(jsonl.trim().split("\n").length, 5);
  assert.match(table, /^TIME +ACTION +BY +SUBJECT +DETAILS\n/);
  assert.match(table, new RegExp(`job\\.deleted +key ${keyId} +${job.id} +project_id=${project.id}`));
  for (const output of [JSON.stringify(entries), jsonl, table]) assert.ok(!output.includes(secret), "no secret in the audit log");

  const since = JSON.parse(await admin("audit", "--since", entries[2].at, "-o", "json")) as any[];
  assert.deepEqual(since.map((e) => e.action), ["project.deleted", "api_key.revoked", "url_secret.rotated"]);
  assert.equal((JSON.parse(await admin("audit", "--since", "1h", "-o", "json")) as any[]).length, 5);
  assert.equal((JSON.parse(await admin("audit", "--since", "2999-01-01", "-o", "json")) as any[]).length, 0);
  const bad = await runCli(["admin", "audit", "--since", "yesterday", "--data-dir", server.dataDir], { env: server.stores.env });
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--since must be/);
});
