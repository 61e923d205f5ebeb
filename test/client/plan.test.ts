import assert from "node:assert/strict";
import { test } from "node:test";
import { planDownload, STATE_DIR_NAME } from "../../src/client/download/plan.js";
import { splitIntoParts } from "../../src/client/download/parts.js";
import { unsafeRelativeNameReason } from "../../src/client/relative-name.js";
import type { CheckpointFile } from "../../src/client/types.js";

const listed = (relative_file_name: string, node_rank = 0): CheckpointFile => ({
  url: "http://x/y",
  relative_file_name,
  node_rank,
  size_bytes: 1,
  last_modified: "2025-01-01T00:00:00Z",
});

test("names that could leave the destination are refused, not rewritten", () => {
  for (const name of ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a/", ".", "..", "a\\..\\b", "C:x", "a\u0000b", "x\u001b[2J"])
    assert.notEqual(unsafeRelativeNameReason(name), null, JSON.stringify(name));
  for (const name of ["model.safetensors", "checkpoint-100/config.json", "a/b/c/d.bin", ".hidden", "..a", "a..b/c", "ünïcode/名前.bin"])
    assert.equal(unsafeRelativeNameReason(name), null, name);
});

test("planDownload maps files to rank folders, refuses bad ranks and names, and takes a duplicate once", () => {
  const plan = planDownload(
    [listed("a/b.bin"), listed("a/b.bin"), listed("c.bin", 3), listed("../up"), { ...listed("x"), node_rank: -1 }, { ...listed("y"), node_rank: 1.5 }],
    {},
    "/data/out",
  );
  assert.deepEqual(
    plan.files.map((f) => [f.localName, f.localPath]),
    [
      ["rank-0/a/b.bin", "/data/out/rank-0/a/b.bin"],
      ["rank-3/c.bin", "/data/out/rank-3/c.bin"],
    ],
  );
  assert.deepEqual(plan.refused.map((r) => r.file.relativeFileName), ["../up", "x", "y"]);
});

test("flat layout: only for one rank, and the state folder's name is reserved", () => {
  const plan = planDownload([listed("model.bin", 2), listed(`${STATE_DIR_NAME}/lock`, 2)], { flat: true }, "/out");
  assert.deepEqual(plan.files.map((f) => f.localPath), ["/out/model.bin"]);
  assert.match(plan.refused[0]!.reason, /reserved/);
  assert.throws(() => planDownload([listed("a", 0), listed("b", 1)], { flat: true }, "/out"), RangeError);
});

test("globs: a glob without '/' matches base names at any depth; with '/', the whole name", () => {
  const files = ["config.json", "checkpoint-1/config.json", "checkpoint-1/sub/tokenizer.json", "checkpoint-1/model.bin", "checkpoint-2/model.bin"].map((n) => listed(n));
  const names = (include: string[]): string[] => planDownload(files, { include }, "/o").files.map((f) => f.relativeFileName);
  assert.deepEqual(names(["*.json"]), ["config.json", "checkpoint-1/config.json", "checkpoint-1/sub/tokenizer.json"]);
  assert.deepEqual(names(["checkpoint-1/*"]), ["checkpoint-1/config.json", "checkpoint-1/model.bin"]);
  assert.deepEqual(names(["checkpoint-1/**", "*.bin"]), [
    "checkpoint-1/config.json",
    "checkpoint-1/sub/tokenizer.json",
    "checkpoint-1/model.bin",
    "checkpoint-2/model.bin",
  ]);
});

test("splitIntoParts covers every byte once, the last part shorter", () => {
  assert.deepEqual(splitIntoParts(0, 4), []);
  assert.deepEqual(splitIntoParts(4, 4), [{ index: 0, start: 0, end: 3 }]);
  assert.deepEqual(splitIntoParts(10, 4), [
    { index: 0, start: 0, end: 3 },
    { index: 1, start: 4, end: 7 },
    { index: 2, start: 8, end: 9 },
  ]);
});
