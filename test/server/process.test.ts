import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteMetadataStore } from "../../src/stores/metadata/sqlite.js";
import { runCli, spawnServer } from "../harness/server.js";
import { api, sha256 } from "../helpers/api.js";

/** `ckpt serve` and `ckpt admin` as real processes over one data directory. */
function dataDir() {
  return mkdtempSync(join(tmpdir(), "ckpt-proc-"));
}

async function createKey(dir: string, org = "acme"): Promise<string> {
  const r = await runCli(["admin", "create-key", "--org", org, "--data-dir", dir]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, "the key is the only line on stdout");
  return lines[0]!;
}

async function projectAndJob(baseUrl: string, key: string) {
  const client = api(baseUrl, key);
  const project = (await client.post("/v1/training_projects", { training_project: { name: "p" } })).body.training_project;
  const job = (await client.post(`/v1/training_projects/${project.id}/jobs`, { training_job: {} })).body.training_job;
  return { client, project, job, jobPath: `/v1/training_projects/${project.id}/jobs/${job.id}` };
}

describe("ckpt admin", () => {
  test("create-key, list-keys and revoke-key work on a data directory; secrets are never listed", async () => {
    const dir = dataDir();
    const server = await spawnServer(dir);
    try {
      const key = await createKey(dir, "team-a");
      assert.match(key, /^ckpt_[a-z0-9]+\.[A-Za-z0-9_-]{43}$/);
      const client = api(server.baseUrl, key);
      assert.equal((await client.get("/v1/training_projects")).status, 200);
      const listed = await runCli(["admin", "list-keys", "--data-dir", dir, "-o", "json"]);
      assert.equal(listed.code, 0);
      const keys = JSON.parse(listed.stdout);
      assert.equal(keys.length, 1);
      assert.equal(keys[0].organisation, "team-a");
      assert.ok(!listed.stdout.includes(key.split(".")[1]!), "the secret is not listed");
      const revoked = await runCli(["admin", "revoke-key", keys[0].key_id, "--data-dir", dir]);
      assert.equal(revoked.code, 0, revoked.stderr);
      assert.equal((await client.get("/v1/training_projects")).status, 401, "revocation is seen by the running server at once");
      const again = await runCli(["admin", "revoke-key", keys[0].key_id, "--data-dir", dir]);
      assert.notEqual(again.code, 0);
      assert.match(again.stderr, /no live API key/);
      // The key never reached the server's log.
      assert.ok(!server.output().includes(key.split(".")[1]!), "no key in the log");
    } finally {
      server.child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("create-key --email gives the key an owner: list-keys shows it, and jobs the key creates carry it as user", async () => {
    const dir = dataDir();
    const server = await spawnServer(dir);
    try {
      const created = await runCli(["admin", "create-key", "--org", "team-a", "--email", "ada@example.com", "--data-dir", dir]);
      assert.equal(created.code, 0, created.stderr);
      const plain = await createKey(dir, "team-a");
      const listed = JSON.parse((await runCli(["admin", "list-keys", "--data-dir", dir, "-o", "json"])).stdout);
      assert.deepEqual(listed.map((k: { email: string | null }) => k.email), ["ada@example.com", null]);
      const table = (await runCli(["admin", "list-keys", "--data-dir", dir])).stdout;
      assert.match(table, /^KEY ID +ORGANISATION +EMAIL +CREATED +STATUS\n\S+ +team-a +ada@example\.com +\S+ +active\n\S+ +team-a +- +\S+ +active\n$/);
      const { job } = await projectAndJob(server.baseUrl, created.stdout.trim());
      assert.deepEqual(job.user, { email: "ada@example.com" });
      assert.deepEqual((await projectAndJob(server.baseUrl, plain)).job.user, { email: null });
      const bad = await runCli(["admin", "create-key", "--org", "team-a", "--email", "not an address", "--data-dir", dir]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /--email/);
      assert.equal(bad.stdout, "");
    } finally {
      server.child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("create-key without --org is an error on stderr with a non-zero exit", async () => {
    const r = await runCli(["admin", "create-key", "--data-dir", dataDir()]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--org/);
    assert.equal(r.stdout, "");
  });
});

describe("ckpt serve", () => {
  test("refuses a non-loopback address without --public", async () => {
    const r = await runCli(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", dataDir()]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--public/);
  });

  test("bad configuration is a clear error, not a stack trace", async () => {
    const r = await runCli(["serve", "--port", "99999", "--data-dir", dataDir()]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /port must be an integer/);
    assert.ok(!r.stderr.includes("    at "));
  });

  for (const workers of [1, 2]) {
    test(`SIGTERM with --workers ${workers}: in-flight downloads finish, then the process exits 0`, async () => {
      const dir = dataDir();
      const server = await spawnServer(dir, { CKPT_WORKERS: String(workers) });
      const key = await createKey(dir);
      const { client, jobPath } = await projectAndJob(server.baseUrl, key);
      const bytes = randomBytes(8 << 20);
      const put = await client.put(`${jobPath}/checkpoint_files/0/big.bin`, bytes);
      assert.equal(put.status, 201);
      // Start a download and read it slowly, so it is in flight when the signal arrives.
      const received: Buffer[] = [];
      const done = new Promise<number>((resolve, reject) => {
        httpRequest(put.body.url, (res) => {
          res.on("data", (d: Buffer) => {
            received.push(d);
            res.pause();
            setTimeout(() => res.resume(), 5);
          });
          res.on("end", () => resolve(res.statusCode!));
          res.on("error", reject);
        }).end();
      });
      await new Promise((r) => setTimeout(r, 100));
      server.child.kill("SIGTERM");
      assert.equal(await done, 200);
      assert.equal(sha256(Buffer.concat(received)), sha256(bytes), "the in-flight download completed intact");
      assert.equal(await server.exited, 0);
      rmSync(dir, { recursive: true, force: true });
    });
  }

  test("kill -9 mid-upload (of the primary of two workers): after restart every acknowledged file is listed intact and nothing partial is", async () => {
    const dir = dataDir();
    let server = await spawnServer(dir, { CKPT_WORKERS: "2" });
    const key = await createKey(dir);
    const { client, jobPath } = await projectAndJob(server.baseUrl, key);
    const acknowledged = new Map<string, string>();
    const uploads: Promise<void>[] = [];
    for (let i = 0; i < 30; i++) {
      const bytes = randomBytes(200_000 + i * 10_000);
      uploads.push(
        client.put(`${jobPath}/checkpoint_files/0/f${i}.bin`, bytes).then(
          (r) => void (r.status === 201 && acknowledged.set(`f${i}.bin`, sha256(bytes))),
          () => undefined,
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 60));
    server.child.kill("SIGKILL");
    await Promise.all(uploads);
    await server.exited;

    server = await spawnServer(dir);
    try {
      const listed = (await api(server.baseUrl, key).get(`${jobPath}/checkpoint_files`)).body.presigned_urls;
      const names = new Set(listed.map((f: any) => f.relative_file_name));
      for (const name of acknowledged.keys()) assert.ok(names.has(name), `${name} got a 201 and must be listed`);
      for (const f of listed) {
        const body = Buffer.from(await (await fetch(f.url)).arrayBuffer());
        assert.equal(body.length, f.size_bytes, `${f.relative_file_name} is complete`);
        if (acknowledged.has(f.relative_file_name)) assert.equal(sha256(body), acknowledged.get(f.relative_file_name));
      }
      assert.deepEqual(readdirSync(join(dir, "tmp")), [], "partial uploads were swept at start-up");
    } finally {
      server.child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a job delete interrupted by a crash is finished at the next start", async () => {
    const dir = dataDir();
    let server = await spawnServer(dir);
    const key = await createKey(dir);
    const { client, project, job, jobPath } = await projectAndJob(server.baseUrl, key);
    assert.equal((await client.put(`${jobPath}/checkpoint_files/0/w.bin`, randomBytes(1000))).status, 201);
    server.child.kill("SIGKILL");
    await server.exited;
    // The crash point: the job is marked deleted (the delete's first, atomic step), blobs remain.
    const store = new SqliteMetadataStore(join(dir, "ckpt.sqlite"));
    const orgId = (await store.listApiKeys())[0]!.orgId;
    assert.ok(await store.markJobDeleted(orgId, project.id, job.id));
    await store.close();
    const jobBlobs = join(dir, "blobs", "training_projects", project.id, "jobs", job.id);
    assert.ok(existsSync(jobBlobs));

    server = await spawnServer(dir);
    try {
      assert.equal((await api(server.baseUrl, key).get(jobPath)).status, 404);
      assert.ok(!existsSync(jobBlobs), "the job's blobs are gone after start-up");
      assert.match(server.output(), /recovered from an earlier unclean stop/);
    } finally {
      server.child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
