import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { startStores, testBackend, type TestStores } from "../harness/stores.js";
import { createKey, eventually, freshDataDir, projectAndJob, serveOn } from "./support.js";

/**
 * /livez and /readyz with each dependency really stopped and started again: PostgreSQL (pg_ctl
 * stop), RGW (radosgw terminated), the embedded store's disk (filled). Readiness turns 503 naming
 * the store, every request in between gets an answer (no hang), and all is well once it returns.
 */

/** A probe or request that must be answered: a hang fails the test instead of stalling it. */
async function answered(url: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(20_000) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function outage(stores: TestStores, stopIt: () => Promise<void>, startIt: () => Promise<void>, failing: "metadata" | "blobs") {
  const server = await serveOn(stores, { CKPT_WORKERS: "1", CKPT_READINESS_TIMEOUT_MS: "1000" });
  try {
    const key = await createKey(stores);
    const { jobPath } = await projectAndJob(server.baseUrl, key);
    const auth = { headers: { authorization: `Api-Key ${key}` } };
    const ready = await answered(`${server.baseUrl}/readyz`);
    assert.equal(ready.status, 200, JSON.stringify(ready.body));
    assert.deepEqual([ready.body.checks.metadata.ok, ready.body.checks.blobs.ok], [true, true]);

    await stopIt();
    let notReady: { status: number; body: any } | undefined;
    await eventually("/readyz answers 503", async () => (notReady = await answered(`${server.baseUrl}/readyz`)).status === 503);
    assert.equal(notReady!.body.code, "NOT_READY");
    assert.equal(notReady!.body.checks[failing].ok, false, JSON.stringify(notReady!.body));
    assert.equal(notReady!.body.checks[failing === "metadata" ? "blobs" : "metadata"].ok, true, "only the stopped one is named");
    assert.match(notReady!.body.message, failing === "metadata" ? /metadata store/ : /blob store/);
    assert.equal((await answered(`${server.baseUrl}/livez`)).status, 200, "still alive: a restart would not help");

    // Requests meanwhile are answered, quickly enough not to trip the 20 s bound, with no 500.
    const listing = await answered(`${server.baseUrl}${jobPath}/checkpoint_files`, auth);
    if (failing === "metadata") {
      assert.equal(listing.status, 503, JSON.stringify(listing.body));
      assert.equal(listing.body.code, "SERVICE_UNAVAILABLE");
      assert.equal(typeof listing.body.request_id, "string");
    } else assert.equal(listing.status, 200, "listing needs no call to the blob store");
    const upload = await answered(`${server.baseUrl}${jobPath}/checkpoint_files/0/during.bin`, { ...auth, method: "PUT", body: Buffer.alloc(1000) });
    assert.ok(upload.status === 503 || upload.status === 507, `${upload.status} ${JSON.stringify(upload.body)}`);

    await startIt();
    await eventually("/readyz answers 200 again", async () => (await answered(`${server.baseUrl}/readyz`)).status === 200, 60_000);
    const after = await answered(`${server.baseUrl}${jobPath}/checkpoint_files/0/after.bin`, { ...auth, method: "PUT", body: Buffer.from("after") });
    assert.equal(after.status, 201, JSON.stringify(after.body));
    assert.equal((await answered(`${server.baseUrl}${jobPath}/checkpoint_files`, auth)).body.total_count, 1);
    assert.doesNotMatch(server.output(), /unhandled error/);
  } finally {
    server.child.kill("SIGKILL");
    await server.exited;
  }
}

describe("readiness with a dependency down", () => {
  test("PostgreSQL stopped: /readyz 503 naming the metadata store, API requests 503 at once; back to 200 when it is started again", async (t) => {
    if (testBackend !== "postgres-s3") return t.skip("PostgreSQL + S3 only: the embedded SQLite has no server to stop");
    const stores = await startStores();
    try {
      await outage(stores, () => stores.services!.stopPostgres(), () => stores.services!.startPostgres(), "metadata");
    } finally {
      await stores.stop();
    }
  });

  test("RGW stopped: /readyz 503 naming the blob store, uploads 503; back to 200 when it is started again", async (t) => {
    if (testBackend !== "postgres-s3") return t.skip("PostgreSQL + S3 only: the embedded store has no RGW");
    const stores = await startStores();
    try {
      await outage(stores, () => stores.services!.stopRgw(), () => stores.services!.startRgw(), "blobs");
    } finally {
      await stores.stop();
    }
  });

  test("the embedded store's disk full: /readyz 503 naming the blob store; back to 200 once space is freed", async (t) => {
    if (testBackend !== "sqlite-local") return t.skip("the embedded store's disk only: on PostgreSQL + S3 ckpt keeps no data on its own disk");
    const mountPoint = freshDataDir("ckpt-tmpfs-");
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mountPoint], { encoding: "utf8" });
    if (mounted.status !== 0) {
      rmSync(mountPoint, { recursive: true, force: true });
      return t.skip(`cannot mount an 8 MiB tmpfs here (${(mounted.stderr || mounted.error?.message || "").trim()}): disk-full readiness NOT tested`);
    }
    const stores = await startStores({ dataDir: join(mountPoint, "data") });
    const filler = join(mountPoint, "filler");
    try {
      await outage(
        stores,
        async () => {
          const fd = openSync(filler, "w");
          try {
            for (;;) writeSync(fd, Buffer.alloc(64 * 1024));
          } catch (err) {
            assert.equal((err as NodeJS.ErrnoException).code, "ENOSPC");
          } finally {
            closeSync(fd);
          }
        },
        async () => rmSync(filler),
        "blobs",
      );
    } finally {
      await stores.stop();
      spawnSync("umount", [mountPoint]);
      rmSync(mountPoint, { recursive: true, force: true });
    }
  });
});
