// The training-log store contract on PostgreSQL: one throwaway cluster, a fresh database per test.
import { after, before, describe } from "node:test";
import assert from "node:assert/strict";
import { PostgresMetadataStore } from "../../src/stores/metadata/postgres.js";
import { postgresAvailable, startPostgres, type PostgresInstance } from "../harness/postgres.js";
import { requireOrSkip } from "../harness/required.js";
import { logStoreSuite } from "./log-store.suite.js";

const available = requireOrSkip("postgres", postgresAvailable());

describe("PostgreSQL training-log store", { skip: available ? false : "SKIPPED: PostgreSQL is not installed" }, () => {
  let cluster: PostgresInstance | null = null;
  before(async () => {
    cluster = await startPostgres();
    assert.ok(cluster, "postgresAvailable() but startPostgres() returned null");
  });
  after(async () => {
    await cluster?.stop();
  });
  logStoreSuite("PostgresMetadataStore", async () => {
    const store = await PostgresMetadataStore.open(await cluster!.createDatabase(), { poolSize: 8 });
    return { store, cleanup: () => store.close() };
  });
});
