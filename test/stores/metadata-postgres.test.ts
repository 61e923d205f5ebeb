// The MetadataStore conformance suite on PostgreSQL, plus what only a shared database has:
// several servers (pools) migrating and committing at once. One throwaway cluster for this
// file, a fresh database per test.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { newId } from "../../src/domain/ids.js";
import { PostgresMetadataStore } from "../../src/stores/metadata/postgres.js";
import { migratePostgres, POSTGRES_MIGRATIONS } from "../../src/stores/metadata/postgres-migrations.js";
import { postgresAvailable, startPostgres, type PostgresInstance } from "../harness/postgres.js";
import { requireOrSkip } from "../harness/required.js";
import { metadataStoreSuite } from "./metadata-store.suite.js";

const available = requireOrSkip("postgres", postgresAvailable());

describe("PostgreSQL metadata store", { skip: available ? false : "SKIPPED: PostgreSQL is not installed" }, () => {
  let cluster: PostgresInstance | null = null;
  before(async () => {
    cluster = await startPostgres();
    assert.ok(cluster, "postgresAvailable() but startPostgres() returned null");
  });
  after(async () => {
    await cluster?.stop();
  });
  const freshDatabase = (): Promise<string> => cluster!.createDatabase();

  metadataStoreSuite("PostgresMetadataStore", async () => {
    const store = await PostgresMetadataStore.open(await freshDatabase(), { poolSize: 8 });
    return { store, cleanup: () => store.close() };
  });

  describe("several servers on one database", () => {
    test("4 servers opening a fresh database at once apply each migration exactly once", async () => {
      const url = await freshDatabase();
      const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresMetadataStore.open(url, { poolSize: 2 })));
      try {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          const { rows } = await client.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
          assert.deepEqual(rows.map((r) => r.version), POSTGRES_MIGRATIONS.map((m) => m.version));
        } finally {
          await client.end();
        }
        // every one of them works against the shared schema
        const orgs = await Promise.all(stores.map((s) => s.ensureOrganisation("acme")));
        assert.equal(new Set(orgs.map((o) => o.id)).size, 1);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });

    test("a migration appended later is applied by exactly one of 4 racing servers", async () => {
      const url = await freshDatabase();
      const pools = Array.from({ length: 4 }, () => new pg.Pool({ connectionString: url, max: 1 }));
      try {
        const first = await Promise.all(pools.map((p) => migratePostgres(p)));
        assert.deepEqual(first.flat(), POSTGRES_MIGRATIONS.map((m) => m.version), "base migrations applied once in all");
        // Not idempotent on purpose: a second application would fail with "already exists".
        const next = POSTGRES_MIGRATIONS.length + 1000;
        const withNext = [...POSTGRES_MIGRATIONS, { version: next, sql: "CREATE TABLE appended_later (id integer PRIMARY KEY)" }];
        const second = await Promise.all(pools.map((p) => migratePostgres(p, withNext)));
        assert.deepEqual(second.flat(), [next]);
        assert.deepEqual(await Promise.all(pools.map((p) => migratePostgres(p, withNext))), [[], [], [], []]);
      } finally {
        await Promise.all(pools.map((p) => p.end()));
      }
    });

    test("timestamps come back as UTC ISO strings whatever the session TimeZone", async () => {
      const url = await freshDatabase();
      const store = await PostgresMetadataStore.open(`${url}?options=${encodeURIComponent("-c TimeZone=Asia/Kolkata")}`);
      try {
        const org = await store.ensureOrganisation("acme");
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          await client.query("UPDATE organisations SET created_at = '2026-11-28T12:17:41.450Z' WHERE id = $1", [org.id]);
        } finally {
          await client.end();
        }
        assert.equal((await store.ensureOrganisation("acme")).createdAt, "2026-11-28T12:17:41.450Z");
      } finally {
        await store.close();
      }
    });

    test("two servers committing to one job keep its positions dense and each name once", async () => {
      const url = await freshDatabase();
      const a = await PostgresMetadataStore.open(url, { poolSize: 6 });
      const b = await PostgresMetadataStore.open(url, { poolSize: 6 });
      try {
        // set-up itself races across the two servers
        const [orgA, orgB] = await Promise.all([a.ensureOrganisation("acme"), b.ensureOrganisation("acme")]);
        assert.equal(orgA.id, orgB.id);
        const [projA, projB] = await Promise.all([a.upsertProject(orgA.id, "llama"), b.upsertProject(orgA.id, "llama")]);
        assert.equal(projA.id, projB.id);
        const job = await a.createJob({ id: newId(), orgId: orgA.id, projectId: projA.id, name: null, spec: {}, priority: 0 });

        // 120 distinct files, each also committed a second time by the other server (a
        // replacement or the first commit, whichever lands first), all at once.
        const names = Array.from({ length: 120 }, (_, i) => `checkpoint-${i % 6}/shard-${i}.safetensors`);
        const commits = names.flatMap((relativeName, i) => {
          const [first, second] = i % 2 === 0 ? [a, b] : [b, a];
          return [first, second].map((store, k) =>
            store.commitFile({ jobId: job.id, nodeRank: i % 3, relativeName, sizeBytes: i * 10 + k, sha256: null }),
          );
        });
        const results = await Promise.all(commits);
        assert.ok(results.every((r) => typeof r === "object"), "every commit succeeded");

        const reread = await b.getJob(orgA.id, projA.id, job.id);
        assert.equal(reread?.fileCount, names.length);
        const listed = await a.listFiles(job.id, 0, 1000);
        assert.deepEqual(listed.map((f) => f.seq), Array.from({ length: names.length }, (_, i) => i));
        assert.deepEqual(listed.map((f) => f.relativeName).sort(), [...names].sort());
        // both commits of a name reported the same position
        const seqOf = new Map(listed.map((f) => [f.relativeName, f.seq]));
        results.forEach((r, k) => {
          if (typeof r === "object") assert.equal(r.file.seq, seqOf.get(names[Math.floor(k / 2)]!));
        });
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });
  });
});
