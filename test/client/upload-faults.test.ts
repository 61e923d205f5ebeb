import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { uploadCheckpointFile, uploadFileDirect } from "../../src/client/index.js";
import { bytes, MiB, sha256, tempDir, seedJob } from "./support/fixtures.js";
import { startProxiedServer } from "./support/proxied-server.js";

/**
 * Uploads through a real proxy in front of a real ckpt server that cuts request bodies and
 * answers 503 and 429: each failed request is sent again (only it: the parts already stored
 * stay), and the file that lands is the file that was sent.
 */

test("direct upload: a part cut mid-body, then 503, then 429 is retried from that part only", async (t) => {
  const { server, proxy } = await startProxiedServer(t, { CKPT_UPLOAD_PART_SIZE: String(5 * MiB) });
  const job = await seedJob(server, [], { apiUrl: proxy.url });
  const dir = tempDir();
  t.after(dir.remove);
  const content = bytes(12 * MiB + 5);
  const path = join(dir.path, "model.bin");
  writeFileSync(path, content);
  let blobPuts = 0;
  proxy.setRule(() => ({ kind: "forward" }));
  proxy.setRule((request) => {
    if (request.method !== "PUT" || !proxy.isBlob(request.path)) return { kind: "forward" };
    blobPuts++;
    if (blobPuts === 1) return { kind: "cut-request", afterBytes: 2 * MiB };
    if (blobPuts === 2) return { kind: "respond", status: 503 };
    if (blobPuts === 3) return { kind: "respond", status: 429, headers: { "retry-after": "0" } };
    return { kind: "forward" };
  });

  const file = await uploadFileDirect(job.client, { projectId: job.projectId, jobId: job.jobId, nodeRank: 0, relativeName: "model.bin", path, partConcurrency: 1 });

  assert.equal(file.size_bytes, content.length);
  // Three parts, and three failed tries of the first one: no stored part was sent again.
  assert.equal(blobPuts, 6);
  const listed = await job.client.getCheckpointFilesPage(job.projectId, job.jobId, 0, 10);
  const url = listed.presigned_urls[0]!.url;
  assert.equal(sha256(Buffer.from(await (await fetch(url)).arrayBuffer())), sha256(content));
});

test("streamed upload (push, sync): cut mid-body, 503 and 429 are retried; the stored file is whole", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const job = await seedJob(server, [], { apiUrl: proxy.url });
  const dir = tempDir();
  t.after(dir.remove);
  const content = bytes(6 * MiB + 1);
  const path = join(dir.path, "shard.bin");
  writeFileSync(path, content);
  const putPath = `/v1/training_projects/${job.projectId}/jobs/${job.jobId}/checkpoint_files/0/shard.bin`;
  proxy.setRule((request) => {
    if (request.method !== "PUT" || request.path !== putPath) return { kind: "forward" };
    if (request.nth === 1) return { kind: "cut-request", afterBytes: MiB };
    if (request.nth === 2) return { kind: "respond", status: 503 };
    if (request.nth === 3) return { kind: "respond", status: 429, headers: { "retry-after": "0" } };
    return { kind: "forward" };
  });

  const file = await uploadCheckpointFile(job.client, { projectId: job.projectId, jobId: job.jobId, nodeRank: 0, relativeName: "shard.bin", path, retry: { baseDelayMs: 5 } });

  assert.equal(file.size_bytes, content.length);
  assert.equal(proxy.requests().filter((r) => r.method === "PUT" && r.path === putPath).length, 4);
  const listed = await job.client.getCheckpointFilesPage(job.projectId, job.jobId, 0, 10);
  assert.equal(sha256(Buffer.from(await (await fetch(listed.presigned_urls[0]!.url)).arrayBuffer())), sha256(content));
});

test("an upload refused for good (4xx) is not retried", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const job = await seedJob(server, [], { apiUrl: proxy.url });
  const dir = tempDir();
  t.after(dir.remove);
  const path = join(dir.path, "x.bin");
  writeFileSync(path, bytes(1000));
  proxy.setRule((request) => (request.method === "PUT" ? { kind: "respond", status: 400, body: JSON.stringify({ message: "no thanks", code: "BAD" }) } : { kind: "forward" }));
  await assert.rejects(uploadCheckpointFile(job.client, { projectId: job.projectId, jobId: job.jobId, nodeRank: 0, relativeName: "x.bin", path }), /no thanks/);
  assert.equal(proxy.requests().filter((r) => r.method === "PUT").length, 1);
});

test("direct upload: a begin answered 503 is sent again; a completion answered 503 starts the upload afresh", async (t) => {
  const { server, proxy } = await startProxiedServer(t, { CKPT_UPLOAD_PART_SIZE: String(5 * MiB) });
  const job = await seedJob(server, [], { apiUrl: proxy.url });
  const dir = tempDir();
  t.after(dir.remove);
  const content = bytes(6 * MiB + 7);
  const path = join(dir.path, "model.bin");
  writeFileSync(path, content);
  const uploadsPath = `/v1/training_projects/${job.projectId}/jobs/${job.jobId}/uploads`;
  let completions = 0;
  proxy.setRule((request) => {
    if (request.method === "POST" && request.path === uploadsPath && request.nth === 1) return { kind: "respond", status: 503 };
    if (request.method === "POST" && request.path.endsWith("/complete") && ++completions === 1) return { kind: "respond", status: 503 };
    return { kind: "forward" };
  });
  const retries: string[] = [];

  const file = await uploadFileDirect(job.client, {
    projectId: job.projectId,
    jobId: job.jobId,
    nodeRank: 0,
    relativeName: "model.bin",
    path,
    retry: { baseDelayMs: 5 },
    onRetry: (message) => retries.push(message),
  });

  assert.equal(file.size_bytes, content.length);
  const posts = proxy.requests().filter((r) => r.method === "POST");
  // The refused begin, the begin whose completion was refused, and the one that completed.
  assert.equal(posts.filter((r) => r.path === uploadsPath).length, 3);
  assert.equal(completions, 2);
  assert.equal(retries.length, 2);
  // Two parts per upload: both sent again for the fresh upload, none more.
  assert.equal(proxy.requests().filter((r) => r.method === "PUT" && proxy.isBlob(r.path)).length, 4);
  const listed = await job.client.getCheckpointFilesPage(job.projectId, job.jobId, 0, 10);
  assert.equal(sha256(Buffer.from(await (await fetch(listed.presigned_urls[0]!.url)).arrayBuffer())), sha256(content));
});
