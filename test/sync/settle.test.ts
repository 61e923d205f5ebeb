import assert from "node:assert/strict";
import { test } from "node:test";
import { isComplete, markerTimes, type ObservedFile } from "../../src/client/sync/settle.js";

const NOW = 100_000;
const SETTLE = 2_000;

function observed(name: string, mtimeMs: number, unchangedForMs: number): ObservedFile {
  return { name, path: `/ckpt/${name}`, size: 1, mtimeMs, unchangedSince: NOW - unchangedForMs };
}

const complete = (file: ObservedFile, markers = markerTimes([])) => isComplete(file, NOW, SETTLE, markers);

test("a file is complete once its size and mtime have been unchanged for the settle interval", () => {
  assert.equal(complete(observed("checkpoint-1/model.bin", 5, SETTLE - 1)), false);
  assert.equal(complete(observed("checkpoint-1/model.bin", 5, SETTLE)), true);
  assert.equal(complete(observed("loose.txt", 5, SETTLE)), true);
});

test("a marker completes the files of its checkpoint folder written before it, not those written after", () => {
  for (const marker of ["trainer_state.json", ".ckpt-complete", "COMPLETE"]) {
    const markers = markerTimes([observed(`checkpoint-1/${marker}`, 500, 0)]);
    assert.equal(complete(observed("checkpoint-1/model.bin", 400, 0), markers), true, marker);
    assert.equal(complete(observed("checkpoint-1/global_step1/shard-0.pt", 500, 0), markers), true, `${marker}: nested file`);
    assert.equal(complete(observed("checkpoint-1/rng_state.pth", 501, 0), markers), false, `${marker}: written after it`);
  }
});

test("a marker covers only its own folder, and is itself complete only once settled", () => {
  const markers = markerTimes([observed("checkpoint-1/COMPLETE", 500, 0)]);
  assert.equal(complete(observed("checkpoint-2/model.bin", 400, 0), markers), false);
  assert.equal(complete(observed("model.bin", 400, 0), markers), false);
  assert.equal(complete(observed("checkpoint-1/COMPLETE", 500, 0), markers), false);
  assert.equal(complete(observed("checkpoint-1/COMPLETE", 500, SETTLE), markers), true);
});

test("marker names count only directly inside a top-level folder; the newest marker of a folder wins", () => {
  assert.deepEqual(markerTimes([observed("COMPLETE", 1, 0), observed("checkpoint-1/sub/COMPLETE", 1, 0), observed("checkpoint-1/model.bin", 1, 0)]), new Map());
  assert.deepEqual(
    markerTimes([observed("checkpoint-1/.ckpt-complete", 300, 0), observed("checkpoint-1/trainer_state.json", 700, 0), observed("checkpoint-2/COMPLETE", 50, 0)]),
    new Map([["checkpoint-1", 700], ["checkpoint-2", 50]]),
  );
});
