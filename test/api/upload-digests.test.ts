import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CkptClient } from "../../src/client/api.js";
import { uploadFileDirect } from "../../src/client/upload/direct-upload.js";
import { SMALL_FILE_BYTES, uploadCheckpointFile } from "../../src/client/upload/streamed-upload.js";
import { startTestServer, type TestServer } from "../harness/server.js";
import { setupJob, sha256 } from "../helpers/api.js";

/**
 * Uploads whose digest is computed while the bytes are sent: the direct-upload protocol takes
 * the SHA-256 at completion, and the client hashes as it reads. Nothing may be listed unless the
 * digest verified, on either backend.
 */
const PART = 5 << 20; // S3's smallest part, so a 12 MiB file is three parts
let server: TestServer;
let dir: string;
before(async () => {
  server = await startTestServer({ env: { CKPT_UPLOAD_PART_SIZE: String(PART) } });
  dir = mkdtempSync(join(tmpdir(), "ckpt-digests-"));
});
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await server.stop();
});

async function putPart(url: string, bytes: Buffer) {
  const r = await fetch(url, { method: "PUT", body: bytes });
  await r.arrayBuffer();
  assert.equal(r.status, 200);
  return r.headers.get("etag")!;
}

/** begin without a digest, PUT every part, complete with `completionSha`. */
async function uploadDeclaringAtCompletion(job: Awaited<ReturnType<typeof setupJob>>, name: string, bytes: Buffer, completionSha: string, beginSha: string | null = null) {
  const begin = await job.client.post(`${job.jobPath}/uploads`, { node_rank: 0, relative_file_name: name, size_bytes: bytes.length, sha256: beginSha });
  assert.equal(begin.status, 200, JSON.stringify(begin.body));
  const parts = [];
  for (const part of begin.body.parts) {
    const start = (part.part_number - 1) * begin.body.part_size_bytes;
    parts.push({ part_number: part.part_number, etag: await putPart(part.url, bytes.subarray(start, start + part.size_bytes)) });
  }
  return { begin, complete: await job.client.post(`${job.jobPath}/uploads/${begin.body.upload_id}/complete`, { parts, sha256: completionSha }) };
}

const clientFor = (job: Awaited<ReturnType<typeof setupJob>>) => new CkptClient({ apiUrl: server.baseUrl, apiKey: job.key });

function localFile(name: string, bytes: Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

describe("digests declared at completion, and computed while sending", () => {
  test("begin says whether the parts go through the API server (only on the embedded store)", async () => {
    const job = await setupJob(server, "digest-kind");
    const begin = await job.client.post(`${job.jobPath}/uploads`, { node_rank: 0, relative_file_name: "a.bin", size_bytes: 10 });
    assert.equal(begin.status, 200);
    assert.equal(begin.body.parts_via_api_server, server.backend === "sqlite-local");
  });

  test("a digest given at completion is verified: right lands, wrong is refused and never listed", async () => {
    const job = await setupJob(server, "digest-at-completion");
    const bytes = randomBytes(12 * 1024 * 1024 + 3);
    const good = await uploadDeclaringAtCompletion(job, "good.bin", bytes, sha256(bytes));
    assert.equal(good.complete.status, 201, JSON.stringify(good.complete.body));
    const bad = await uploadDeclaringAtCompletion(job, "bad.bin", bytes, sha256("something else"));
    assert.equal(bad.complete.status, 400, JSON.stringify(bad.complete.body));
    const listed = (await job.client.get(`${job.jobPath}/checkpoint_files`)).body;
    assert.deepEqual(listed.presigned_urls.map((f: { relative_file_name: string }) => f.relative_file_name), ["good.bin"]);
  });

  test("a completion digest that contradicts the one declared at the start is refused", async () => {
    const job = await setupJob(server, "digest-contradiction");
    const bytes = randomBytes(1000);
    const { complete } = await uploadDeclaringAtCompletion(job, "a.bin", bytes, sha256("other"), sha256(bytes));
    assert.equal(complete.status, 400, JSON.stringify(complete.body));
    assert.equal((await job.client.get(`${job.jobPath}/checkpoint_files`)).body.total_count, 0);
  });

  for (const size of [0, 1000, PART, 12 * 1024 * 1024 + 7]) {
    test(`the client's direct upload of ${size} bytes, hashed while sent, lands with its digest`, async () => {
      const job = await setupJob(server, `digest-direct-${size}`);
      const bytes = randomBytes(size);
      const path = localFile(`direct-${size}.bin`, bytes);
      const target = { projectId: job.project.id, jobId: job.job.id, nodeRank: 0, relativeName: `d/${size}.bin`, path };
      const file = await uploadFileDirect(clientFor(job), target);
      assert.equal(file.size_bytes, size);
      const body = Buffer.from(await (await fetch(file.url)).arrayBuffer());
      assert.equal(sha256(body), sha256(bytes));
      assert.equal((await job.client.get(`${job.jobPath}/checkpoint_files`)).body.total_count, 1);
    });
  }

  test("a direct upload whose parts would pass through the API server hands over to one PUT, leaving no upload behind", async () => {
    const job = await setupJob(server, "digest-handover");
    const bytes = randomBytes(PART + 1);
    const path = localFile("handover.bin", bytes);
    const client = clientFor(job);
    const target = { projectId: job.project.id, jobId: job.job.id, nodeRank: 0, relativeName: "handover.bin", path };
    let handedOver = false;
    const file = await uploadFileDirect(client, {
      ...target,
      whenPartsViaApiServer: () => {
        handedOver = true;
        return uploadCheckpointFile(client, target);
      },
    });
    assert.equal(handedOver, server.backend === "sqlite-local");
    const body = Buffer.from(await (await fetch(file.url)).arrayBuffer());
    assert.equal(sha256(body), sha256(bytes));
  });

  for (const size of [0, 4096, SMALL_FILE_BYTES, SMALL_FILE_BYTES + 1]) {
    test(`one PUT of a ${size}-byte file without a digest given computes and sends it`, async () => {
      const job = await setupJob(server, `digest-put-${size}`);
      const bytes = randomBytes(size);
      const path = localFile(`put-${size}.bin`, bytes);
      const file = await uploadCheckpointFile(clientFor(job), { projectId: job.project.id, jobId: job.job.id, nodeRank: 0, relativeName: "p.bin", path });
      assert.equal(file.size_bytes, size);
      const body = Buffer.from(await (await fetch(file.url)).arrayBuffer());
      assert.equal(sha256(body), sha256(bytes));
    });
  }

  test("one PUT with a wrong digest is refused with the server's message and nothing is listed", async () => {
    const job = await setupJob(server, "digest-put-wrong");
    const path = localFile("wrong.bin", randomBytes(5000));
    await assert.rejects(
      uploadCheckpointFile(clientFor(job), { projectId: job.project.id, jobId: job.job.id, nodeRank: 0, relativeName: "w.bin", path, sha256: sha256("nope") }),
      (err: Error & { status?: number }) => err.status === 400 && /sha256/.test(err.message),
    );
    assert.equal((await job.client.get(`${job.jobPath}/checkpoint_files`)).body.total_count, 0);
  });
});
