import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { postgresAvailable, startPostgres, type PostgresInstance } from "../harness/postgres.js";
import { requireOrSkip } from "../harness/required.js";
import { scaleOutEnv } from "../harness/stores.js";
import { rgwAvailable, startRgw, type RgwInstance } from "../harness/rgw.js";
import { runCli, spawnServer, type ServerProcess } from "../harness/server.js";
import { api, sha256 } from "../helpers/api.js";

let pg: PostgresInstance | null = null;
let rgw: RgwInstance | null = null;
before(async () => {
  if (postgresAvailable() && rgwAvailable()) [pg, rgw] = await Promise.all([startPostgres(), startRgw()]);
});
after(async () => {
  await Promise.all([pg?.stop(), rgw?.stop()]);
});

test("two ckpt servers on one PostgreSQL + S3 give one truth and survive one being killed", async (t) => {
  if (!requireOrSkip("postgres", postgresAvailable(), t) || !requireOrSkip("rgw", rgwAvailable(), t) || !pg || !rgw) return;
  const env = { ...(await scaleOutEnv(pg, rgw)).env, CKPT_UPLOAD_PART_SIZE: String(5 << 20) };
  const dirs = [mkdtempSync(join(tmpdir(), "ckpt-a-")), mkdtempSync(join(tmpdir(), "ckpt-b-"))];
  // Started together: both apply migrations to the fresh database at once (advisory lock).
  const [a, b] = (await Promise.all(dirs.map((d) => spawnServer(d, env)))) as [ServerProcess, ServerProcess];
  try {
    const keyRun = await runCli(["admin", "create-key", "--org", "acme"], { env });
    assert.equal(keyRun.code, 0, keyRun.stderr);
    const key = keyRun.stdout.trim();
    const viaA = api(a.baseUrl, key);
    const viaB = api(b.baseUrl, key);
    const project = (await viaA.post("/v1/training_projects", { training_project: { name: "p" } })).body.training_project;
    assert.equal((await viaB.post("/v1/training_projects", { training_project: { name: "p" } })).body.training_project.id, project.id);
    const job = (await viaB.post(`/v1/training_projects/${project.id}/jobs`, { training_job: {} })).body.training_job;
    const jobPath = `/v1/training_projects/${project.id}/jobs/${job.id}`;

    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 6; i++) {
      const bytes = randomBytes(50_000 + i);
      files[`f${i}.bin`] = bytes;
      const r = await (i % 2 ? viaA : viaB).put(`${jobPath}/checkpoint_files/${i % 3}/f${i}.bin`, bytes);
      assert.equal(r.status, 201);
    }
    // A direct upload begun on A and completed on B.
    const big = randomBytes((5 << 20) * 2 + 11);
    files["big.bin"] = big;
    const begin = await viaA.post(`${jobPath}/uploads`, { node_rank: 0, relative_file_name: "big.bin", size_bytes: big.length, sha256: sha256(big) });
    const parts = [];
    for (const p of begin.body.parts) {
      const start = (p.part_number - 1) * begin.body.part_size_bytes;
      const r = await fetch(p.url, { method: "PUT", body: big.subarray(start, start + p.size_bytes) });
      await r.arrayBuffer();
      parts.push({ part_number: p.part_number, etag: r.headers.get("etag")! });
    }
    assert.equal((await viaB.post(`${jobPath}/uploads/${begin.body.upload_id}/complete`, { parts })).status, 201);

    const strip = (body: any) => ({ ...body, presigned_urls: body.presigned_urls.map(({ url: _url, ...rest }: any) => rest) });
    const listA = (await viaA.get(`${jobPath}/checkpoint_files`)).body;
    const listB = (await viaB.get(`${jobPath}/checkpoint_files`)).body;
    assert.deepEqual(strip(listA), strip(listB), "both servers list the same files in the same order");
    assert.equal(listA.total_count, 7);

    // Kill A with an upload in flight through it; B keeps serving everything.
    const inFlight = viaA.put(`${jobPath}/checkpoint_files/0/late.bin`, randomBytes(30 << 20)).catch(() => null);
    await new Promise((r) => setTimeout(r, 50));
    a.child.kill("SIGKILL");
    await inFlight;
    const after = (await viaB.get(`${jobPath}/checkpoint_files`)).body;
    for (const f of after.presigned_urls) {
      const body = Buffer.from(await (await fetch(f.url)).arrayBuffer());
      assert.equal(body.length, f.size_bytes, `${f.relative_file_name} is complete`);
      if (files[f.relative_file_name]) assert.equal(sha256(body), sha256(files[f.relative_file_name]!));
    }
    assert.equal((await viaB.get(`${jobPath}/checkpoints`)).status, 200);
  } finally {
    a.child.kill("SIGKILL");
    b.child.kill("SIGKILL");
    await Promise.all([a.exited, b.exited]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});
