import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { placeImportedObject, resolveImportProject } from "../../src/cli/admin-import.js";
import { CliError } from "../../src/cli/common.js";
import { requireOrSkip } from "../harness/required.js";
import { rgwAvailable, startRgw, type RgwInstance } from "../harness/rgw.js";
import { runCli, startTestServer } from "../harness/server.js";
import { api, sha256 } from "../helpers/api.js";
import { safetensorsFile } from "../helpers/safetensors.js";

test("objects map to ranks by their rank-N/ folder", () => {
  assert.deepEqual(placeImportedObject("rank-3/checkpoint-1/a.bin"), { nodeRank: 3, relativeName: "checkpoint-1/a.bin" });
  assert.deepEqual(placeImportedObject("checkpoint-1/a.bin"), { nodeRank: 0, relativeName: "checkpoint-1/a.bin" });
  assert.deepEqual(placeImportedObject("rank-99999/x"), { nodeRank: 0, relativeName: "rank-99999/x" });
  assert.deepEqual(placeImportedObject("rank-01/x"), { nodeRank: 0, relativeName: "rank-01/x" });
});

test("the project to import into: an id needs no --org (it names its organisation); a name does", async () => {
  const server = await startTestServer();
  try {
    const { service } = server;
    const acme = await service.metadata.ensureOrganisation("acme");
    const project = await service.metadata.upsertProject(acme.id, "llama");
    const byId = await resolveImportProject(service, { project: project.id });
    assert.equal(byId.project.id, project.id);
    assert.equal(byId.caller.orgId, acme.id, "acting as the project's organisation");
    await assert.rejects(resolveImportProject(service, { project: "llama" }), (err: unknown) => err instanceof CliError && /--org/.test(err.message));
    const withOrg = await resolveImportProject(service, { org: "acme", project: project.id });
    assert.equal(withOrg.project.id, project.id, "with --org, an id of its project is that project");
    const named = await resolveImportProject(service, { org: "acme", project: "new-one" });
    assert.equal(named.project.name, "new-one", "with --org, a new name is created");
    assert.equal(named.caller.orgId, acme.id);
  } finally {
    await server.stop();
  }
});

let rgw: RgwInstance | null = null;
before(async () => {
  if (rgwAvailable()) rgw = await startRgw();
});
after(async () => {
  await rgw?.stop();
});

test("ckpt admin import adopts a bucket's existing checkpoints (ranks from rank-N/ folders)", async (t) => {
  if (!requireOrSkip("rgw", rgwAvailable(), t) || !rgw) return;
  const storeBucket = await rgw.createBucket();
  const legacyBucket = await rgw.createBucket();
  const s3 = new S3Client(rgw.s3Config);
  const objects: Record<string, Buffer> = {
    "runs/llama/rank-0/checkpoint-100/model.safetensors": safetensorsFile([{ name: "embed", dtype: "BF16", shape: [1000, 150] }]),
    "runs/llama/rank-1/checkpoint-100/model.safetensors": randomBytes(200_000),
    "runs/llama/config.json": Buffer.from("{}"),
    "runs/llama/bad//name.bin": Buffer.from("skipped"),
    "runs/other/rank-0/not-this.bin": Buffer.from("outside the prefix"),
  };
  for (const [Key, Body] of Object.entries(objects)) await s3.send(new PutObjectCommand({ Bucket: legacyBucket, Key, Body }));

  const dataDir = mkdtempSync(join(tmpdir(), "ckpt-import-"));
  const env = {
    CKPT_DATA_DIR: dataDir,
    CKPT_BLOB_STORE: `s3://${storeBucket}/ckpt`,
    CKPT_S3_ENDPOINT: rgw.endpoint,
    CKPT_S3_REGION: rgw.region,
    AWS_ACCESS_KEY_ID: rgw.accessKeyId,
    AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
  };
  try {
    const dry = await runCli(["admin", "import", "--org", "acme", "--project", "llama", "--dry-run", `s3://${legacyBucket}/runs/llama`], { env });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /rank 1  checkpoint-100\/model.safetensors/);
    const r = await runCli(["admin", "import", "--org", "acme", "--project", "llama", `s3://${legacyBucket}/runs/llama`], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /imported 3 files/);
    assert.match(r.stderr, /skipped 1/);
    const jobId = r.stdout.trim().split("\n").pop()!;
    const projectId = /project (\w+), job/.exec(r.stderr)?.[1];
    assert.ok(projectId, r.stderr);
    const byId = await runCli(["admin", "import", "--project", projectId, "--dry-run", `s3://${legacyBucket}/runs/llama`], { env });
    assert.equal(byId.code, 0, `a project id needs no --org: ${byId.stderr}`);
    assert.match(byId.stdout, /rank 1  checkpoint-100\/model.safetensors/);

    const server = await startTestServer({ dataDir, env });
    try {
      const client = api(server.baseUrl, await server.createKey("acme"));
      const project = (await client.get("/v1/training_projects")).body.training_projects[0];
      const jobs = (await client.get(`/v1/training_projects/${project.id}/jobs`)).body.training_jobs;
      assert.deepEqual(jobs.map((j: { id: string }) => j.id), [jobId], "the dry runs created no job");
      const listed = (await client.get(`/v1/training_projects/${project.id}/jobs/${jobId}/checkpoint_files`)).body.presigned_urls;
      const got = new Map<string, string>();
      for (const f of listed) got.set(`${f.node_rank}/${f.relative_file_name}`, sha256(Buffer.from(await (await fetch(f.url)).arrayBuffer())));
      assert.deepEqual(
        Object.fromEntries([...got].sort()),
        {
          "0/checkpoint-100/model.safetensors": sha256(objects["runs/llama/rank-0/checkpoint-100/model.safetensors"]!),
          "0/config.json": sha256(objects["runs/llama/config.json"]!),
          "1/checkpoint-100/model.safetensors": sha256(objects["runs/llama/rank-1/checkpoint-100/model.safetensors"]!),
        },
      );
      // Headers are read at import (one ranged GET each): rank 0's parses, rank 1's random bytes do not.
      const tensors = (await client.get(`/v1/training_projects/${project.id}/jobs/${jobId}/checkpoints/checkpoint-100/tensors`)).body;
      assert.deepEqual(tensors.files.map((f: any) => [f.node_rank, f.tensors.map((t: any) => t.name), f.error !== null]), [[0, ["embed"], false], [1, [], true]]);
      assert.equal(tensors.parameter_count, 150_000);
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
