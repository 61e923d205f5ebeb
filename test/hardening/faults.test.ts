import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, rmSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { runCli } from "../harness/server.js";
import { startStores, testBackend, type TestStores } from "../harness/stores.js";
import { api, sha256 } from "../helpers/api.js";
import { collectGarbageIn, createKey, eventually, freshDataDir, heldUpload, projectAndJob, serveOn, sleep } from "./support.js";

/** Crashes and faults, on the backend under test: nothing lost, nothing half-visible, nothing left behind. */

async function gc(stores: TestStores, ...args: string[]) {
  const r = await runCli(["admin", "gc", "--data-dir", stores.dataDir, "-o", "json", ...args], { env: stores.env });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { interruptedDeletes: number; temporaryRemoved: number; orphans: { key: string; sizeBytes: number; action: string }[] };
}

/** Fills the filesystem holding `dir` until it refuses more; returns the filler's path. */
function fillDisk(dir: string): string {
  const path = join(dir, "filler");
  const fd = openSync(path, "w");
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, "ENOSPC");
  } finally {
    closeSync(fd);
  }
  return path;
}

describe("disk full", () => {
  test("an upload that fills the disk is a 507 with a message; nothing is corrupted and reads go on", async (t) => {
    if (testBackend !== "sqlite-local") return t.skip("the embedded store's disk only: on PostgreSQL + S3 ckpt keeps no upload data on its own disk");
    const mountPoint = freshDataDir("ckpt-tmpfs-");
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mountPoint], { encoding: "utf8" });
    if (mounted.status !== 0) {
      rmSync(mountPoint, { recursive: true, force: true });
      return t.skip(`cannot mount an 8 MiB tmpfs here (${(mounted.stderr || mounted.error?.message || "").trim()}): disk-full behaviour NOT tested`);
    }
    const stores = await startStores({ dataDir: join(mountPoint, "data") });
    const server = await serveOn(stores);
    try {
      const key = await createKey(stores);
      const { client, jobPath } = await projectAndJob(server.baseUrl, key);
      const kept = randomBytes(1 << 20);
      assert.equal((await client.put(`${jobPath}/checkpoint_files/0/kept.bin`, kept)).status, 201);

      const tooBig = await client.put(`${jobPath}/checkpoint_files/0/too-big.bin`, randomBytes(16 << 20));
      assert.equal(tooBig.status, 507, JSON.stringify(tooBig.body));
      assert.match(tooBig.body.message, /out of space/);
      await eventually("the partial upload's temporary data is removed", async () => (await stores.pendingUploads()).length === 0);

      // Completely full now: uploads are refused cleanly, reads still work.
      const filler = fillDisk(mountPoint);
      const full = await client.put(`${jobPath}/checkpoint_files/0/small.bin`, randomBytes(100_000));
      assert.ok(full.status === 507 || full.status === 503, `${full.status} ${JSON.stringify(full.body)}`);
      assert.equal(typeof full.body.message, "string");
      const listed = await client.get(`${jobPath}/checkpoint_files`);
      assert.equal(listed.status, 200);
      assert.deepEqual(listed.body.presigned_urls.map((f: any) => f.relative_file_name), ["kept.bin"]);
      assert.equal(sha256(Buffer.from(await (await fetch(listed.body.presigned_urls[0].url)).arrayBuffer())), sha256(kept));
      // Metadata writes may still find room in the database file, or not: then a 507 too, never a 500.
      const created = await client.post("/v1/training_projects", { training_project: { name: "while-full" } });
      assert.ok(created.status === 200 || created.status === 507, `${created.status} ${JSON.stringify(created.body)}`);
      const patched = await client.patch(jobPath, { priority: 3 });
      assert.ok(patched.status === 200 || patched.status === 507, `${patched.status} ${JSON.stringify(patched.body)}`);
      if (patched.status === 507) assert.match(patched.body.message, /out of space/);

      // Space back: the same server takes uploads again.
      rmSync(filler);
      assert.equal((await client.put(`${jobPath}/checkpoint_files/0/after.bin`, Buffer.from("after"))).status, 201);
      assert.doesNotMatch(server.output(), /unhandled error/);
    } finally {
      server.child.kill("SIGKILL");
      await server.exited;
      spawnSync("umount", [mountPoint]);
      rmSync(mountPoint, { recursive: true, force: true });
    }
  });
});

describe("kill -9 and ckpt admin gc", () => {
  test("kill -9 in the middle of a job delete: after restart the job is fully there or fully gone, and gc leaves no blob of it", async () => {
    // One data directory and one key throughout; each round kills the server the previous
    // round restarted, at a different moment of its delete.
    const stores = await startStores();
    const key = await createKey(stores);
    let server = await serveOn(stores);
    try {
      for (const [round, killAfterMs] of [0, 40].entries()) {
        const { client, project, job, jobPath } = await projectAndJob(server.baseUrl, key, `round-${round}`);
        const files = new Map<string, Buffer>();
        await Promise.all(
          Array.from({ length: 60 }, async (_, i) => {
            const bytes = randomBytes(2000 + i);
            files.set(`d${i % 10}/f${i}.bin`, bytes);
            assert.equal((await client.put(`${jobPath}/checkpoint_files/0/d${i % 10}/f${i}.bin`, bytes)).status, 201);
          }),
        );
        const deleting = client.del(jobPath).catch(() => null);
        await sleep(killAfterMs);
        server.child.kill("SIGKILL");
        await deleting;
        await server.exited;

        server = await serveOn(stores);
        const after = api(server.baseUrl, key);
        const got = await after.get(jobPath);
        const gone = got.status === 404;
        if (gone) {
          assert.equal((await after.get(`${jobPath}/checkpoint_files`)).status, 404);
        } else {
          assert.equal(got.status, 200, `killed after ${killAfterMs} ms: ${JSON.stringify(got.body)}`);
          const listed = await after.get(`${jobPath}/checkpoint_files`);
          assert.equal(listed.body.total_count, files.size, `killed after ${killAfterMs} ms: a job still there has all its files`);
          for (const f of listed.body.presigned_urls) {
            const body = Buffer.from(await (await fetch(f.url)).arrayBuffer());
            assert.equal(sha256(body), sha256(files.get(f.relative_file_name)!), `${f.relative_file_name} intact`);
          }
        }
        // Safe beside the running server here: no upload is in flight.
        const report = await collectGarbageIn(stores, { minAgeMs: 0 });
        const jobPrefix = `training_projects/${project.id}/jobs/${job.id}/`;
        assert.deepEqual(report.orphans.filter((o) => o.key.startsWith(jobPrefix)), [], "no blob of the job was left without its row");
        const remaining = await stores.blobKeys(jobPrefix);
        assert.equal(remaining.length, gone ? 0 : files.size, gone ? "no blob of the deleted job remains" : "every blob of the surviving job remains");
      }
    } finally {
      server.child.kill("SIGKILL");
      await server.exited;
      await stores.stop();
    }
  });

  test("gc reports orphan blobs and leftover temporary data, removes them (not in a dry run, not when young), and keeps live files", async () => {
    const stores = await startStores();
    let server = await serveOn(stores);
    const key = await createKey(stores);
    const { client, project, job, jobPath } = await projectAndJob(server.baseUrl, key);
    const live = randomBytes(5000);
    assert.equal((await client.put(`${jobPath}/checkpoint_files/0/live.bin`, live)).status, 201);
    server.child.kill("SIGKILL");
    await server.exited;

    // What a crash or a bug could leave: bytes no row owns (old and new), and temporary data.
    const prefix = `training_projects/${project.id}/jobs/${job.id}/rank-0/`;
    await stores.writeBlob(`${prefix}orphan-old.bin`, randomBytes(1234));
    // `ckpt admin gc` as a process where ages can be set; on S3 an object's age cannot be, so the
    // old orphan ages for real past a short minimum age and gc runs in this process, straight
    // after the young one is written (a CLI start on a loaded machine could outlast the margin).
    let runGc: (dryRun: boolean) => Promise<{ temporaryRemoved: number; orphans: { key: string; sizeBytes: number; action: string }[] }>;
    if (stores.backend === "sqlite-local") {
      const aDayAgo = new Date(Date.now() - 86_400_000);
      utimesSync(join(stores.dataDir, "blobs", prefix, "orphan-old.bin"), aDayAgo, aDayAgo);
      mkdirSync(join(stores.dataDir, "tmp"), { recursive: true });
      writeFileSync(join(stores.dataDir, "tmp", "leftover"), randomBytes(100));
      utimesSync(join(stores.dataDir, "tmp", "leftover"), aDayAgo, aDayAgo);
      // Young temporary data may be an upload a running server is writing: kept.
      writeFileSync(join(stores.dataDir, "tmp", "in-progress"), randomBytes(100));
      runGc = (dryRun) => (dryRun ? gc(stores, "--dry-run") : gc(stores));
    } else {
      await sleep(8_000);
      await stores.writeBlob(".ckpt-staging/leftover", randomBytes(100));
      runGc = (dryRun) => collectGarbageIn(stores, { dryRun, minAgeMs: 5_000 });
    }
    await stores.writeBlob(`${prefix}orphan-young.bin`, randomBytes(99));
    const pendingBefore = await stores.pendingUploads();
    assert.equal(pendingBefore.length, stores.backend === "sqlite-local" ? 2 : 1);

    const dry = await runGc(true);
    assert.deepEqual(
      dry.orphans.map((o) => [o.key, o.sizeBytes, o.action]).sort(),
      [
        [`${prefix}orphan-old.bin`, 1234, "would remove"],
        [`${prefix}orphan-young.bin`, 99, "kept: too young"],
      ],
    );
    const jobPrefix = `training_projects/${project.id}/jobs/${job.id}/`;
    assert.equal((await stores.blobKeys(jobPrefix)).length, 3, "a dry run changes nothing");
    assert.deepEqual(await stores.pendingUploads(), pendingBefore, "a dry run changes nothing");

    const real = await runGc(false);
    assert.deepEqual(real.orphans.map((o) => [o.key, o.action]).sort(), [
      [`${prefix}orphan-old.bin`, "removed"],
      [`${prefix}orphan-young.bin`, "kept: too young"],
    ]);
    const liveKeys = (await stores.blobKeys(jobPrefix)).filter((k) => !k.startsWith(prefix));
    assert.equal(liveKeys.length, 1);
    assert.ok(liveKeys[0]!.endsWith("/live.bin"), liveKeys[0]);
    assert.deepEqual(await stores.blobKeys(prefix), [`${prefix}orphan-young.bin`]);
    if (stores.backend === "sqlite-local") {
      assert.equal(real.temporaryRemoved, 1);
      assert.deepEqual(await stores.pendingUploads(), ["in-progress"]);
    } else {
      // On S3 another server may be writing its staging data: only day-old leftovers are swept.
      assert.equal(real.temporaryRemoved, 0);
      assert.deepEqual(await stores.pendingUploads(), pendingBefore);
    }
    assert.deepEqual((await collectGarbageIn(stores, { minAgeMs: 0 })).orphans.map((o) => o.key), [`${prefix}orphan-young.bin`]);

    server = await serveOn(stores);
    try {
      const listed = await api(server.baseUrl, key).get(`${jobPath}/checkpoint_files`);
      assert.deepEqual(listed.body.presigned_urls.map((f: any) => f.relative_file_name), ["live.bin"]);
      assert.equal(sha256(Buffer.from(await (await fetch(listed.body.presigned_urls[0].url)).arrayBuffer())), sha256(live));
    } finally {
      server.child.kill("SIGKILL");
      await server.exited;
      await stores.stop();
    }
  });
});

describe("ckpt admin gc beside a running server", () => {
  test("an upload in flight while gc runs is kept, completes and is intact", async () => {
    const stores = await startStores();
    const server = await serveOn(stores);
    try {
      const key = await createKey(stores);
      const { jobPath } = await projectAndJob(server.baseUrl, key);
      // Over one S3 part (8 MiB), so that on S3 too the upload has stored something gc could take.
      const first = randomBytes(9 << 20);
      const rest = randomBytes(1 << 20);
      const upload = heldUpload(`${server.baseUrl}${jobPath}/checkpoint_files/0/in-flight.bin`, key, first, [rest]);
      await eventually("the upload has stored temporary data", async () => (await stores.pendingUploads()).length > 0);
      const report = await gc(stores);
      assert.equal(report.temporaryRemoved, 0, "a young upload is not swept");
      assert.ok((await stores.pendingUploads()).length > 0);
      upload.release();
      const r = await upload.response;
      assert.equal(r.status, 201, r.body);
      const body = Buffer.from(await (await fetch(JSON.parse(r.body).url)).arrayBuffer());
      assert.equal(sha256(body), sha256(Buffer.concat([first, rest])));
    } finally {
      server.child.kill("SIGKILL");
      await server.exited;
      await stores.stop();
    }
  });
});

describe("SIGTERM", () => {
  test("in-flight uploads finish, new connections are refused during the drain, and the process exits 0", async () => {
    const stores = await startStores();
    const server = await serveOn(stores, { CKPT_GRACE_PERIOD: "30" });
    const key = await createKey(stores);
    const { jobPath } = await projectAndJob(server.baseUrl, key);
    const chunks = Array.from({ length: 20 }, () => randomBytes(50_000));
    const total = chunks.reduce((n, c) => n + c.length, 0);
    // The rest only once the server has been told to stop, so the upload is certainly in flight.
    const upload = heldUpload(`${server.baseUrl}${jobPath}/checkpoint_files/0/in-flight.bin`, key, chunks[0]!, chunks.slice(1), 20);
    await upload.firstSent;
    // The server logs each request as it arrives (at the default level): then it is in flight.
    await eventually("the upload has reached the server", () => server.output().includes("in-flight.bin"));
    server.child.kill("SIGTERM");
    await eventually("the server stops accepting connections", async () => {
      const { port } = new URL(server.baseUrl);
      return new Promise<boolean>((resolve) => {
        const s = connect(Number(port), "127.0.0.1");
        s.on("connect", () => (s.destroy(), resolve(false)));
        s.on("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
      });
    });
    upload.release();
    const r = await upload.response;
    assert.equal(r.status, 201, r.body);
    assert.equal(JSON.parse(r.body).size_bytes, total);
    assert.equal(await server.exited, 0);

    const again = await serveOn(stores);
    try {
      const listed = await api(again.baseUrl, key).get(`${jobPath}/checkpoint_files`);
      assert.equal(listed.body.total_count, 1);
      const body = Buffer.from(await (await fetch(listed.body.presigned_urls[0].url)).arrayBuffer());
      assert.equal(sha256(body), sha256(Buffer.concat(chunks)), "the upload finished during the drain is intact");
    } finally {
      again.child.kill("SIGKILL");
      await again.exited;
      await stores.stop();
    }
  });
});
