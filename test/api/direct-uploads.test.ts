import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli, startTestServer, type TestServer } from "../harness/server.js";
import { setupJob, sha256 } from "../helpers/api.js";
import { assertSeedShape } from "../helpers/spec.js";

const PART = 5 << 20; // S3's smallest part, so a 12 MiB file is three parts
let server: TestServer;
before(async () => {
  server = await startTestServer({ env: { CKPT_UPLOAD_PART_SIZE: String(PART) } });
});
after(() => server.stop());

const local = () => server.backend === "sqlite-local";
const tmpFiles = () => (local() ? readdirSync(join(server.dataDir, "tmp")) : []);

async function putPart(url: string, bytes: Buffer) {
  const r = await fetch(url, { method: "PUT", body: bytes });
  await r.arrayBuffer();
  return r;
}

/** begin → PUT every part (in reverse order, to show order does not matter) → complete. */
async function directUpload(job: Awaited<ReturnType<typeof setupJob>>, name: string, bytes: Buffer, declaredSha = sha256(bytes)) {
  const begin = await job.client.post(`${job.jobPath}/uploads`, { node_rank: 0, relative_file_name: name, size_bytes: bytes.length, sha256: declaredSha });
  assert.equal(begin.status, 200, JSON.stringify(begin.body));
  const parts: { part_number: number; etag: string }[] = [];
  for (const part of [...begin.body.parts].reverse()) {
    const start = (part.part_number - 1) * begin.body.part_size_bytes;
    const r = await putPart(part.url, bytes.subarray(start, start + part.size_bytes));
    assert.equal(r.status, 200, `part ${part.part_number}`);
    parts.push({ part_number: part.part_number, etag: r.headers.get("etag")! });
  }
  const complete = await job.client.post(`${job.jobPath}/uploads/${begin.body.upload_id}/complete`, { parts });
  return { begin, complete, parts };
}

describe("direct uploads (begin, PUT parts, complete)", () => {
  for (const size of [0, 1000, 12 * 1024 * 1024 + 7]) {
    test(`a ${size}-byte file lands intact and is listed only after completion`, async () => {
      const job = await setupJob(server, `direct-${size}`);
      const bytes = randomBytes(size);
      const { begin, complete } = await directUpload(job, `ckpt/file-${size}.bin`, bytes);
      assert.equal(begin.body.parts.length, Math.max(1, Math.ceil(size / PART)));
      assert.equal(complete.status, 201, JSON.stringify(complete.body));
      assertSeedShape("CheckpointFile", complete.body);
      const listed = (await job.client.get(`${job.jobPath}/checkpoint_files`)).body;
      assert.equal(listed.total_count, 1);
      const body = Buffer.from(await (await fetch(listed.presigned_urls[0].url)).arrayBuffer());
      assert.equal(sha256(body), sha256(bytes));
      assert.deepEqual(tmpFiles(), []);
    });
  }

  test("nothing is listed between begin and complete", async () => {
    const job = await setupJob(server, "direct-invisible");
    const bytes = randomBytes(2000);
    const begin = await job.client.post(`${job.jobPath}/uploads`, { node_rank: 1, relative_file_name: "x.bin", size_bytes: 2000, sha256: sha256(bytes) });
    assert.equal((await putPart(begin.body.parts[0].url, bytes)).status, 200);
    assert.equal((await job.client.get(`${job.jobPath}/checkpoint_files`)).body.total_count, 0);
    assert.equal((await job.client.del(`${job.jobPath}/uploads/${begin.body.upload_id}`)).status, 200);
  });

  test("a wrong digest is refused at completion; nothing is kept and the upload is gone", async () => {
    const job = await setupJob(server, "direct-digest");
    const bytes = randomBytes(3000);
    const { begin, complete, parts } = await directUpload(job, "bad.bin", bytes, sha256("something else"));
    assert.equal(complete.status, 400);
    assert.match(complete.body.message, /sha256/);
    assert.equal((await job.client.get(`${job.jobPath}/checkpoint_files`)).body.total_count, 0);
    const again = await job.client.post(`${job.jobPath}/uploads/${begin.body.upload_id}/complete`, { parts });
    assert.equal(again.status, 404);
    assert.deepEqual(tmpFiles(), []);
  });

  test("a missing part or a short part is refused and nothing is listed", async () => {
    const job = await setupJob(server, "direct-missing");
    const bytes = randomBytes(11 << 20);
    const begin = await job.client.post(`${job.jobPath}/uploads`, { node_rank: 0, relative_file_name: "m.bin", size_bytes: bytes.length, sha256: sha256(bytes) });
    const [p1, p2] = begin.body.parts;
    const r1 = await putPart(p1.url, bytes.subarray(0, PART));
    const short = await putPart(p2.url, bytes.subarray(PART, PART + 100));
    const parts = [{ part_number: 1, etag: r1.headers.get("etag")! }];
    if (short.ok) parts.push({ part_number: 2, etag: short.headers.get("etag")! });
    else assert.equal(short.status, 400, "the embedded store refuses a short part at once");
    const complete = await job.client.post(`${job.jobPath}/uploads/${begin.body.upload_id}/complete`, { parts });
    assert.equal(complete.status, 400, JSON.stringify(complete.body));
    assert.equal((await job.client.get(`${job.jobPath}/checkpoint_files`)).body.total_count, 0);
  });

  test("abort discards the upload; another organisation cannot see, complete or abort it", async () => {
    const job = await setupJob(server, "direct-abort");
    const other = await setupJob(server, "direct-abort-other");
    const begin = await job.client.post(`${job.jobPath}/uploads`, { node_rank: 0, relative_file_name: "a.bin", size_bytes: 10 });
    const foreignPath = `${job.jobPath}/uploads/${begin.body.upload_id}`;
    assert.equal((await other.client.post(`${foreignPath}/complete`, { parts: [] })).status, 404);
    assert.equal((await other.client.del(foreignPath)).status, 404);
    assert.equal((await job.client.del(foreignPath)).status, 200);
    assert.equal((await job.client.post(`${foreignPath}/complete`, { parts: [] })).status, 404);
    // On S3 a presigned PUT stays valid until it expires; what it writes is swept as staging.
    if (local()) assert.equal((await putPart(begin.body.parts[0].url, Buffer.alloc(10))).status, 404, "its URLs are dead");
    assert.deepEqual(tmpFiles(), []);
  });

  test("expired uploads are aborted by the sweep", async () => {
    const job = await setupJob(server, "direct-expire");
    const begin = await job.client.post(`${job.jobPath}/uploads`, { node_rank: 0, relative_file_name: "e.bin", size_bytes: 10 });
    assert.ok((await server.service.expireUploads(new Date(Date.now() + 2 * 24 * 3600 * 1000))) >= 1);
    assert.equal((await job.client.post(`${job.jobPath}/uploads/${begin.body.upload_id}/complete`, { parts: [] })).status, 404);
    assert.deepEqual(tmpFiles(), []);
  });

  test("bad requests: names, sizes, digests, conflicts", async () => {
    const job = await setupJob(server, "direct-bad");
    assert.equal((await job.upload(0, "dir", Buffer.from("a file"))).status, 201);
    const cases: [unknown, number][] = [
      [{ node_rank: 0, relative_file_name: "../x", size_bytes: 1 }, 400],
      [{ node_rank: -1, relative_file_name: "x", size_bytes: 1 }, 400],
      [{ node_rank: 0, relative_file_name: "x", size_bytes: -5 }, 400],
      [{ node_rank: 0, relative_file_name: "x", size_bytes: 1.5 }, 400],
      [{ node_rank: 0, relative_file_name: "x", size_bytes: 1, sha256: "NOTHEX" }, 400],
      [{ node_rank: 0, relative_file_name: "x" }, 400],
      [{ node_rank: 0, relative_file_name: "dir/inside", size_bytes: 1 }, 409],
    ];
    for (const [body, status] of cases) {
      const r = await job.client.post(`${job.jobPath}/uploads`, body);
      assert.equal(r.status, status, JSON.stringify(body));
      assert.equal(typeof r.body.message, "string");
    }
  });

  test("a tampered part URL is refused", async () => {
    const job = await setupJob(server, "direct-tamper");
    const begin = await job.client.post(`${job.jobPath}/uploads`, { node_rank: 0, relative_file_name: "t.bin", size_bytes: 10 });
    const url = new URL(begin.body.parts[0].url);
    const sigParam = local() ? "X-Ckpt-Signature" : "X-Amz-Signature";
    const sig = url.searchParams.get(sigParam)!;
    url.searchParams.set(sigParam, sig.slice(0, -1) + (sig.endsWith("a") ? "b" : "a"));
    assert.equal((await putPart(url.toString(), Buffer.alloc(10))).status, 403);
  });

  test("ckpt push uploads a folder directly and skips what is already there", async () => {
    const job = await setupJob(server, "direct-push");
    const dir = mkdtempSync(join(tmpdir(), "ckpt-push-"));
    try {
      mkdirSync(join(dir, "checkpoint-1"));
      const big = randomBytes(PART * 2 + 123);
      writeFileSync(join(dir, "checkpoint-1", "model.bin"), big);
      writeFileSync(join(dir, "checkpoint-1", "config.json"), "{}");
      writeFileSync(join(dir, "empty"), "");
      const env = { CKPT_API_URL: server.baseUrl, CKPT_API_KEY: job.key };
      const args = ["push", "--project", job.project.name, "--job", job.job.id, "--node-rank", "2", dir];
      const first = await runCli(args, { env });
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stderr, /3 uploaded/);
      const files = (await job.client.get(`${job.jobPath}/checkpoint_files`)).body.presigned_urls;
      assert.deepEqual(files.map((f: any) => `${f.node_rank}:${f.relative_file_name}`).sort(), ["2:checkpoint-1/config.json", "2:checkpoint-1/model.bin", "2:empty"]);
      const model = files.find((f: any) => f.relative_file_name === "checkpoint-1/model.bin");
      assert.equal(sha256(Buffer.from(await (await fetch(model.url)).arrayBuffer())), sha256(big));
      const second = await runCli(args, { env });
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stderr, /0 uploaded .* 3 already up to date/);
      assert.ok(!first.stderr.includes(job.key) && !second.stderr.includes(job.key), "the key is never printed");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
