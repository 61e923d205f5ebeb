import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { JOURNAL_NAME, loadJournal, SyncJournal } from "../../src/client/sync/journal.js";
import { scanFolder } from "../../src/client/sync/scan.js";

const identity = { projectId: "p1", jobId: "j1", nodeRank: 0 };
const version = (n: number) => ({ size: n, mtimeMs: 1000.5 + n, sha256: String(n % 10).repeat(64) });

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "ckpt-journal-test-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("the journal keeps the last version recorded per file, and survives a torn last line", async (t) => {
  const dir = tempDir(t);
  const journal = await SyncJournal.create(dir, identity, new Map([["kept.bin", version(1)]]), (err) => assert.fail(err));
  journal.record("a.bin", version(2));
  journal.record("a.bin", version(3));
  await journal.close();
  appendFileSync(join(dir, JOURNAL_NAME), '{"name":"torn.bin","size":4,"mt');

  assert.deepEqual(await loadJournal(dir, identity), new Map([["kept.bin", version(1)], ["a.bin", version(3)]]));
});

test("a journal of another job or rank, or none at all, is an empty one", async (t) => {
  const dir = tempDir(t);
  assert.deepEqual(await loadJournal(dir, identity), new Map());
  await (await SyncJournal.create(dir, identity, new Map([["a.bin", version(1)]]), () => {})).close();
  assert.deepEqual(await loadJournal(dir, { ...identity, nodeRank: 1 }), new Map());
  assert.deepEqual(await loadJournal(dir, { ...identity, jobId: "j2" }), new Map());
  writeFileSync(join(dir, JOURNAL_NAME), "not json\n");
  assert.deepEqual(await loadJournal(dir, identity), new Map());
});

test("starting a journal afresh replaces the old one with only the entries still true", async (t) => {
  const dir = tempDir(t);
  const first = await SyncJournal.create(dir, identity, new Map(), () => {});
  first.record("gone.bin", version(1));
  await first.close();
  await (await SyncJournal.create(dir, identity, new Map([["a.bin", version(2)]]), () => {})).close();
  assert.deepEqual(await loadJournal(dir, identity), new Map([["a.bin", version(2)]]));
  assert.equal(readFileSync(join(dir, JOURNAL_NAME), "utf8").trim().split("\n").length, 2);
});

test("the scan lists regular files by relative name, without the journal and without following symlinks", async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, "checkpoint-1/nested"), { recursive: true });
  writeFileSync(join(dir, "checkpoint-1/nested/shard.bin"), "12345");
  writeFileSync(join(dir, "root.txt"), "");
  writeFileSync(join(dir, JOURNAL_NAME), "journal");
  writeFileSync(join(dir, `${JOURNAL_NAME}.tmp`), "journal being replaced");
  writeFileSync(join(dir, "checkpoint-1", JOURNAL_NAME), "not at the root: an ordinary file");
  symlinkSync("/etc", join(dir, "outside"));
  symlinkSync(join(dir, "root.txt"), join(dir, "link.txt"));

  const files = await scanFolder(dir);
  assert.deepEqual([...files.keys()], [`checkpoint-1/${JOURNAL_NAME}`, "checkpoint-1/nested/shard.bin", "root.txt"]);
  assert.equal(files.get("checkpoint-1/nested/shard.bin")!.size, 5);
  assert.equal(files.get("checkpoint-1/nested/shard.bin")!.path, join(dir, "checkpoint-1/nested/shard.bin"));
  assert.deepEqual(await scanFolder(join(dir, "missing")), new Map());
});
