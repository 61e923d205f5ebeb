import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { startTestServer } from "../harness/server.js";
import { CkptApiError, CkptClient, getJob, listCheckpointFiles, listCheckpoints, listJobs, listProjects } from "../../src/client/index.js";
import { seedJob } from "./support/fixtures.js";

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** A fetch that forwards to the real one and records the URLs asked for (injectable fetch). */
function recordingFetch(): { fetch: typeof fetch; urls: URL[] } {
  const urls: URL[] = [];
  return {
    urls,
    fetch: (input, init) => {
      urls.push(new URL(String(input)));
      return fetch(input, init);
    },
  };
}

test("listCheckpointFiles follows next_page_token across pages, in order", async (t) => {
  const server = await startTestServer();
  t.after(() => server.stop());
  const names = ["a.bin", "b.bin", "c/d.bin", "e.bin", "f.bin"];
  const job = await seedJob(server, names.map((name) => ({ rank: 0, name, content: Buffer.from(name) })));
  const recorder = recordingFetch();

  const files = await collect(
    listCheckpointFiles({ apiUrl: server.baseUrl, apiKey: job.apiKey, fetch: recorder.fetch, projectId: job.projectId, jobId: job.jobId, pageSize: 2 }),
  );

  assert.deepEqual(files.map((f) => f.relative_file_name), names);
  assert.deepEqual(files.map((f) => f.size_bytes), names.map((n) => n.length));
  assert.deepEqual(recorder.urls.map((u) => u.searchParams.get("page_token")), ["0", "2", "4"]);
});

test("listCheckpointFiles stops on an empty page even when the server keeps sending a token", async (t) => {
  let requests = 0;
  // A real HTTP server on loopback playing a broken API: a token forever, files only on page 0.
  const server = createServer((req, res) => {
    requests++;
    const token = Number(new URL(req.url ?? "/", "http://x").searchParams.get("page_token"));
    const files = token === 0 ? [{ url: "http://x/1", relative_file_name: "only.bin", node_rank: 0, size_bytes: 1, last_modified: "2025-01-01T00:00:00Z" }] : [];
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ presigned_urls: files, next_page_token: token + 1, total_count: 1 }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => server.close());

  const files = await collect(listCheckpointFiles({ apiUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: "k", projectId: "p", jobId: "j" }));

  assert.deepEqual(files.map((f) => f.relative_file_name), ["only.bin"]);
  assert.equal(requests, 2);
});

test("listProjects, listJobs, listCheckpoints and getJob take a client or connection options", async (t) => {
  const server = await startTestServer();
  t.after(() => server.stop());
  const job = await seedJob(server, [
    { rank: 0, name: "checkpoint-1/a.bin", content: Buffer.from("abc") },
    { rank: 0, name: "checkpoint-2/b.bin", content: Buffer.from("defgh") },
  ]);
  const connection = { apiUrl: server.baseUrl, apiKey: job.apiKey };

  assert.deepEqual((await collect(listProjects(connection))).map((p) => p.name), [job.projectName]);
  assert.deepEqual((await collect(listJobs({ client: job.client, projectId: job.projectId }))).map((j) => j.id), [job.jobId]);
  const checkpoints = await collect(listCheckpoints({ ...connection, projectId: job.projectId, jobId: job.jobId }));
  assert.deepEqual(checkpoints.map((c) => [c.checkpoint_id, c.size_bytes]), [["checkpoint-1", 3], ["checkpoint-2", 5]]);
  assert.equal((await getJob({ ...connection, projectId: job.projectId, jobId: job.jobId })).id, job.jobId);
});

test("API failures are CkptApiError with the status and the server's message", async (t) => {
  const server = await startTestServer();
  t.after(() => server.stop());
  const job = await seedJob(server, []);

  const missing = await getJob({ apiUrl: server.baseUrl, apiKey: job.apiKey, projectId: job.projectId, jobId: "nosuchjob" }).catch((e: unknown) => e);
  assert.ok(missing instanceof CkptApiError);
  assert.equal(missing.status, 404);
  assert.match(missing.message, /not found|no .*job/i);

  const unauthorised = await collect(listProjects({ client: new CkptClient({ apiUrl: server.baseUrl, apiKey: "ckpt_wrong.key" }) })).catch((e: unknown) => e);
  assert.ok(unauthorised instanceof CkptApiError);
  assert.equal(unauthorised.status, 401);

  const unreachable = await collect(listProjects({ apiUrl: "http://127.0.0.1:9", apiKey: "k" })).catch((e: unknown) => e);
  assert.ok(unreachable instanceof CkptApiError);
  assert.equal(unreachable.status, 0);
});
