// The MetadataStore conformance suite on the embedded backend: a fresh SQLite file per test.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { SqliteMetadataStore } from "../../src/stores/metadata/sqlite.js";
import { metadataStoreSuite } from "./metadata-store.suite.js";

const dir = mkdtempSync(join(tmpdir(), "ckpt-sqlite-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
metadataStoreSuite("SqliteMetadataStore", async () => {
  const store = new SqliteMetadataStore(join(dir, `metadata-${++n}.db`));
  return { store, cleanup: () => store.close() };
});
