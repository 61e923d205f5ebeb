// The training-log part of the MetadataStore contract, run on SQLite (log-store-sqlite.test.ts)
// and PostgreSQL (log-store-postgres.test.ts). Each test opens a fresh, empty store.
import { test } from "node:test";
import assert from "node:assert/strict";
import { newId } from "../../src/domain/ids.js";
import type { LogQuery, NewLogLine } from "../../src/domain/logs.js";
import type { MetadataStore } from "../../src/stores/metadata/store.js";
import type { OpenedStore } from "./metadata-store.suite.js";

/** Beyond 2^53: a timestamp that a double would round. */
const BASE_NS = 1_764_633_600_123_456_789n;

function line(offsetNs: number, message: string, extra: Partial<NewLogLine> = {}): NewLogLine {
  return { timestampNs: (BASE_NS + BigInt(offsetNs)).toString(), nodeRank: 0, stream: "stdout", level: null, message, ...extra };
}

function window(jobId: string, extra: Partial<LogQuery> = {}): LogQuery {
  return { jobId, fromNs: BASE_NS, untilNs: BASE_NS + 1_000_000_000n, direction: "asc", limit: 1000, levels: null, ...extra };
}

async function newJob(store: MetadataStore): Promise<{ orgId: string; projectId: string; jobId: string }> {
  const org = await store.ensureOrganisation("acme");
  const project = await store.upsertProject(org.id, "logs");
  const job = await store.createJob({ id: newId(), orgId: org.id, projectId: project.id, name: null, spec: {}, priority: 0 });
  return { orgId: org.id, projectId: project.id, jobId: job.id };
}

export function logStoreSuite(name: string, open: () => Promise<OpenedStore>): void {
  const withStore = (body: (store: MetadataStore) => Promise<void>) => async () => {
    const { store, cleanup } = await open();
    try {
      await body(store);
    } finally {
      await cleanup();
    }
  };

  test(`${name}: lines come back in time order, nanoseconds exact, ties in arrival order`, withStore(async (store) => {
    const { jobId } = await newJob(store);
    await store.appendLogLines(jobId, [line(30, "c"), line(10, "a"), line(10, "a2", { stream: "stderr", nodeRank: 3 })], 1000);
    await store.appendLogLines(jobId, [line(20, "b", { level: "ERROR" })], 1000);
    const asc = await store.queryLogLines(window(jobId));
    assert.deepEqual(asc.map((l) => l.message), ["a", "a2", "b", "c"]);
    assert.equal(asc[0]!.timestampNs, (BASE_NS + 10n).toString());
    assert.deepEqual({ ...asc[1]!, seq: 0 }, { seq: 0, timestampNs: (BASE_NS + 10n).toString(), nodeRank: 3, stream: "stderr", level: null, message: "a2" });
    assert.equal(asc[2]!.level, "ERROR");
    const desc = await store.queryLogLines(window(jobId, { direction: "desc", limit: 2 }));
    assert.deepEqual(desc.map((l) => l.message), ["c", "b"]);
  }));

  test(`${name}: the window includes its start and excludes its end; levels filter`, withStore(async (store) => {
    const { jobId } = await newJob(store);
    await store.appendLogLines(
      jobId,
      [line(0, "start", { level: "INFO" }), line(5, "debug", { level: "DEBUG" }), line(9, "warn", { level: "WARNING" }), line(10, "end")],
      1000,
    );
    const inWindow = await store.queryLogLines(window(jobId, { untilNs: BASE_NS + 10n }));
    assert.deepEqual(inWindow.map((l) => l.message), ["start", "debug", "warn"]);
    const later = await store.queryLogLines(window(jobId, { fromNs: BASE_NS + 1n }));
    assert.deepEqual(later.map((l) => l.message), ["debug", "warn", "end"]);
    const warnings = await store.queryLogLines(window(jobId, { levels: ["WARNING", "ERROR"] }));
    assert.deepEqual(warnings.map((l) => l.message), ["warn"]);
    assert.deepEqual(await store.queryLogLines(window(jobId, { levels: [] })), []);
  }));

  test(`${name}: beyond the cap the oldest lines are dropped, the newest kept`, withStore(async (store) => {
    const { jobId } = await newJob(store);
    for (let batch = 0; batch < 5; batch++) {
      const lines = Array.from({ length: 4 }, (_, i) => line(batch * 4 + i, `line-${batch * 4 + i}`));
      assert.deepEqual(await store.appendLogLines(jobId, lines, 10), { stored: 4 });
    }
    const kept = await store.queryLogLines(window(jobId));
    assert.deepEqual(kept.map((l) => l.message), Array.from({ length: 10 }, (_, i) => `line-${i + 10}`));
  }));

  test(`${name}: another job's lines stay apart; a deleted job takes none and loses its own`, withStore(async (store) => {
    const a = await newJob(store);
    const b = await newJob(store);
    await store.appendLogLines(a.jobId, [line(1, "of a")], 1000);
    await store.appendLogLines(b.jobId, [line(1, "of b")], 1000);
    assert.deepEqual((await store.queryLogLines(window(a.jobId))).map((l) => l.message), ["of a"]);
    assert.equal(await store.appendLogLines("no-such-job", [line(1, "x")], 1000), "job-gone");

    assert.ok(await store.markJobDeleted(a.orgId, a.projectId, a.jobId));
    assert.equal(await store.appendLogLines(a.jobId, [line(2, "late")], 1000), "job-gone");
    await store.purgeJob(a.jobId);
    assert.deepEqual(await store.queryLogLines(window(a.jobId)), []);
    assert.deepEqual((await store.queryLogLines(window(b.jobId))).map((l) => l.message), ["of b"]);
  }));

  test(`${name}: concurrent batches of one job all land, each line once`, withStore(async (store) => {
    const { jobId } = await newJob(store);
    await Promise.all(
      Array.from({ length: 8 }, (_, b) => store.appendLogLines(jobId, Array.from({ length: 50 }, (_, i) => line(b * 50 + i, `b${b}-${i}`)), 100_000)),
    );
    const all = await store.queryLogLines(window(jobId));
    assert.equal(all.length, 400);
    assert.equal(new Set(all.map((l) => l.seq)).size, 400);
  }));
}
