// The training-log store contract on the embedded backend: a fresh SQLite file per test.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { SqliteMetadataStore } from "../../src/stores/metadata/sqlite.js";
import { logStoreSuite } from "./log-store.suite.js";

const dir = mkdtempSync(join(tmpdir(), "ckpt-sqlite-logs-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
logStoreSuite("SqliteMetadataStore", async () => {
  const store = new SqliteMetadataStore(join(dir, `metadata-${++n}.db`));
  return { store, cleanup: () => store.close() };
});
