import assert from "node:assert/strict";
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { CkptClient } from "../../src/client/api.js";
import { CheckpointSync } from "../../src/client/sync/checkpoint-sync.js";
import type { CheckpointSyncOptions, SyncEvent } from "../../src/client/sync/types.js";
import { listedDigests, sha256, startSyncServer, waitFor, workspace } from "./support.js";

const MiB = 1 << 20;

async function jobFor(client: CkptClient, name: string) {
  const project = await client.upsertProject(name);
  const job = await client.createJob(project.id, {});
  return { projectId: project.id, jobId: job.id };
}

async function openEngine(t: TestContext, options: CheckpointSyncOptions): Promise<{ sync: CheckpointSync; events: SyncEvent[] }> {
  const events: SyncEvent[] = [];
  const sync = await CheckpointSync.open({ settleMs: 200, scanIntervalMs: 50, ...options, onEvent: (e) => events.push(e) });
  t.after(() => sync.close());
  return { sync, events };
}

describe("CheckpointSync", { concurrency: true }, () => {
  test("a file that changes while it is being sent is refused by the server, then uploaded again once it settles", async (t) => {
    const { client } = await startSyncServer(t);
    const ws = workspace(t);
    const ids = await jobFor(client, "changing");
    const path = join(ws.path, "model.bin");
    writeFileSync(path, Buffer.alloc(3 * MiB, 1));
    let putStarted!: () => void;
    const uploading = new Promise<void>((resolve) => (putStarted = resolve));
    const spy: typeof fetch = (input, init) => {
      if (init?.method === "PUT") putStarted();
      return fetch(input, init);
    };
    // Throttled, so the tail of the file is read well after the upload has started.
    const spiedClient = client.withFetch(spy);
    const { sync, events } = await openEngine(t, { client: spiedClient, ...ids, nodeRank: 0, dir: ws.path, maxBytesPerSecond: 2 * MiB });
    const drained = sync.drain({ assumeComplete: false });
    await uploading;
    overwrite(path, 2 * MiB, Buffer.alloc(MiB, 2));

    const summary = await drained;
    assert.deepEqual(summary.failed, []);
    assert.ok(events.some((e) => e.type === "changed-during-upload" && e.name === "model.bin"), JSON.stringify(events));
    assert.deepEqual(await listedDigests(client, ids.projectId, ids.jobId), { "model.bin": sha256(readFileSync(path)) });
  });

  test("a restarted engine skips only what the journal, the disk and the server all agree on", async (t) => {
    const { client } = await startSyncServer(t);
    const ws = workspace(t);
    const ids = await jobFor(client, "resume");
    for (const name of ["a.bin", "b.bin", "c.bin"]) writeFileSync(join(ws.path, name), name.repeat(1000));
    const first = await openEngine(t, { client, ...ids, nodeRank: 0, dir: ws.path });
    assert.equal((await first.sync.drain({ assumeComplete: true })).uploaded, 3);
    await first.sync.close();

    appendFileSync(join(ws.path, "b.bin"), "changed since");
    // d.bin is in the journal with its true size, mtime and digest, but the server never got it.
    writeFileSync(join(ws.path, "d.bin"), "never uploaded");
    const d = statSync(join(ws.path, "d.bin"));
    appendFileSync(join(ws.path, ".ckpt-sync.jsonl"), JSON.stringify({ name: "d.bin", size: d.size, mtime_ms: d.mtimeMs, sha256: sha256(Buffer.from("never uploaded")) }) + "\n");

    const second = await openEngine(t, { client, ...ids, nodeRank: 0, dir: ws.path });
    const summary = await second.sync.drain({ assumeComplete: true });
    assert.deepEqual({ resumed: summary.resumed, uploaded: summary.uploaded, failed: summary.failed }, { resumed: 2, uploaded: 2, failed: [] });
    assert.deepEqual(second.events.filter((e) => e.type === "uploaded").map((e) => (e as { name: string }).name).sort(), ["b.bin", "d.bin"]);
    await second.sync.close();

    // The journal belongs to one job and rank: another rank starts from nothing.
    const otherRank = await openEngine(t, { client, ...ids, nodeRank: 1, dir: ws.path });
    assert.equal((await otherRank.sync.drain({ assumeComplete: true })).resumed, 0);
  });

  test("a name the API refuses is reported once and does not hold up the rest", async (t) => {
    const { client } = await startSyncServer(t);
    const ws = workspace(t);
    const ids = await jobFor(client, "bad-names");
    mkdirSync(join(ws.path, "checkpoint-1"));
    writeFileSync(join(ws.path, "checkpoint-1/ok.bin"), "fine");
    writeFileSync(join(ws.path, "checkpoint-1/bad\u0007name.bin"), "bell");
    const { sync, events } = await openEngine(t, { client, ...ids, nodeRank: 0, dir: ws.path });
    const summary = await sync.drain({ assumeComplete: false });
    assert.deepEqual(summary.failed.map((f) => f.name), ["checkpoint-1/bad\u0007name.bin"]);
    assert.match(summary.failed[0]!.message, /control characters/);
    assert.equal(events.filter((e) => e.type === "upload-failed").length, 1);
    assert.deepEqual(Object.keys(await listedDigests(client, ids.projectId, ids.jobId)), ["checkpoint-1/ok.bin"]);
  });

  test("watching reports checkpoint_sync_status: SYNCING while a file is being written, COMPLETED once it landed", async (t) => {
    const { client } = await startSyncServer(t);
    const ws = workspace(t);
    const ids = await jobFor(client, "status");
    const { sync } = await openEngine(t, { client, ...ids, nodeRank: 0, dir: ws.path, reportSyncStatus: true });
    const stop = new AbortController();
    t.after(() => stop.abort());
    const watching = sync.watch(stop.signal);
    const status = async () => (await client.getJob(ids.projectId, ids.jobId)).checkpoint_sync_status;
    assert.equal(await status(), null, "nothing written yet: no status");

    const fd = openSync(join(ws.path, "growing.bin"), "w");
    writeSync(fd, "first half");
    await waitFor("SYNCING", async () => (await status()) === "SYNCING");
    writeSync(fd, ", second half");
    closeSync(fd);
    await waitFor("COMPLETED", async () => (await status()) === "COMPLETED");
    stop.abort();
    await watching;
    assert.deepEqual(await listedDigests(client, ids.projectId, ids.jobId), { "growing.bin": sha256(Buffer.from("first half, second half")) });
  });
});

function overwrite(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, "r+");
  writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
}
