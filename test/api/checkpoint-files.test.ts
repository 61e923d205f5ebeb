import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestServer, type TestServer } from "../harness/server.js";
import { api, listAllLikeBaseten, setupJob, sha256 } from "../helpers/api.js";
import { assertBasetenShape, assertSeedShape } from "../helpers/spec.js";

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

/**
 * Listing tests need many files but not their bytes; rows are committed through the store
 * (the same call an upload ends with), which keeps a 2,500-file job fast to build.
 */
async function seedFiles(jobId: string, count: number, rank = 0, prefix = "f") {
  for (let i = 0; i < count; i++)
    await server.service.metadata.commitFile({ jobId, nodeRank: rank, relativeName: `${prefix}/${String(i).padStart(5, "0")}.bin`, sizeBytes: i, sha256: null });
}

describe("GET checkpoint_files", () => {
  for (const count of [0, 1, 999, 1000, 1001, 2500]) {
    test(`a Baseten-style pager sees each of ${count} files exactly once`, async () => {
      const { client, job, jobPath } = await setupJob(server, `org-paging-${count}`);
      await seedFiles(job.id, count);
      const { files, pages } = await listAllLikeBaseten(client, jobPath);
      assert.equal(files.length, count);
      assert.equal(new Set(files.map((f) => f.relative_file_name)).size, count);
      assert.equal(pages, Math.max(1, Math.ceil(count / 1000)));
      const first = await client.get(`${jobPath}/checkpoint_files`);
      assertSeedShape("GetTrainingJobCheckpointFilesResponseV1", first.body);
      assertBasetenShape("GetTrainingJobCheckpointFilesResponseV1", first.body);
      assert.equal(first.body.total_count, count);
      assert.equal(first.body.next_page_token, count > 1000 ? 1000 : null);
    });
  }

  test("paging stays exact while uploads and replacements land between pages", async () => {
    const { client, job, jobPath, upload } = await setupJob(server, "org-live-paging");
    await seedFiles(job.id, 25);
    const seen: string[] = [];
    let token: number | null = 0;
    let round = 0;
    while (token !== null) {
      const r: { body: any } = await client.get(`${jobPath}/checkpoint_files?page_size=10&page_token=${token}`);
      seen.push(...r.body.presigned_urls.map((f: any) => f.relative_file_name));
      token = r.body.next_page_token;
      // Between pages: a new file, and a replacement of a file already seen and one not yet seen.
      assert.equal((await upload(1, `late/${round}.bin`, Buffer.from("new"))).status, 201);
      assert.equal((await upload(0, "f/00001.bin", Buffer.from("replaced"))).status, 201);
      assert.equal((await upload(0, "f/00024.bin", Buffer.from("replaced too"))).status, 201);
      round++;
    }
    const original = Array.from({ length: 25 }, (_, i) => `f/${String(i).padStart(5, "0")}.bin`);
    for (const name of original) assert.equal(seen.filter((s) => s === name).length, 1, `${name} seen exactly once`);
    assert.equal(new Set(seen).size, seen.length, "no file listed twice");
  });

  test("entries carry every CheckpointFile field, with sizes and ISO 8601 UTC times", async () => {
    const { client, jobPath, upload } = await setupJob(server, "org-fields");
    const bytes = Buffer.from("x".repeat(1234));
    const put = await upload(3, "checkpoint-5/model.bin", bytes);
    assert.equal(put.status, 201);
    assertSeedShape("CheckpointFile", put.body);
    const r = await client.get(`${jobPath}/checkpoint_files`);
    const [file] = r.body.presigned_urls;
    assert.equal(file.relative_file_name, "checkpoint-5/model.bin");
    assert.equal(file.node_rank, 3);
    assert.equal(file.size_bytes, 1234);
    assert.match(file.last_modified, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    const urlBase = server.config.blobStore.kind === "s3" ? server.config.blobStore.endpoint! : server.baseUrl;
    assert.ok(file.url.startsWith(urlBase + "/"), "URL is absolute: the public URL, or the S3 endpoint");
    const download = await fetch(file.url);
    assert.equal(sha256(Buffer.from(await download.arrayBuffer())), sha256(bytes));
  });

  test("page_size is clamped to the server maximum; page_token past the end is an empty last page", async () => {
    const { client, job, jobPath } = await setupJob(server, "org-clamp");
    await seedFiles(job.id, 1005);
    const big = await client.get(`${jobPath}/checkpoint_files?page_size=5000`);
    assert.equal(big.status, 200);
    assert.equal(big.body.presigned_urls.length, server.config.maxPageSize);
    assert.equal(big.body.next_page_token, 1000);
    const past = await client.get(`${jobPath}/checkpoint_files?page_token=999999`);
    assert.deepEqual([past.status, past.body.presigned_urls, past.body.next_page_token, past.body.total_count], [200, [], null, 1005]);
    const last = await client.get(`${jobPath}/checkpoint_files?page_token=1000&page_size=1000`);
    assert.equal(last.body.presigned_urls.length, 5);
    assert.equal(last.body.next_page_token, null);
  });

  for (const query of ["page_size=0", "page_size=-1", "page_size=abc", "page_size=1.5", "page_token=-1", "page_token=x", "page_token=1e400", "page_size=1e3", "page_size=0x10", "page_size=", "page_size=1&page_size=2"]) {
    test(`rejects ${query} with a 400 and a message`, async () => {
      const { client, jobPath } = await setupJob(server, `org-bad-${query}`);
      const r = await client.get(`${jobPath}/checkpoint_files?${query}`);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(typeof r.body.message, "string");
    });
  }

  test("an unknown or foreign job is a 404", async () => {
    const a = await setupJob(server, "org-a404");
    const b = await setupJob(server, "org-b404");
    assert.equal((await a.client.get(`/v1/training_projects/${a.project.id}/jobs/nope/checkpoint_files`)).status, 404);
    assert.equal((await a.client.get(`${b.jobPath}/checkpoint_files`)).status, 404);
    assert.equal((await api(server.baseUrl, a.key).get(`/v1/training_projects/${a.project.id}/jobs/${b.job.id}/checkpoint_files`)).status, 404);
  });
});
