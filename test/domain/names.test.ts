import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { checkpointIdOf } from "../../src/domain/checkpoint-id.js";
import { ancestorsOf, blobKeyOf, parseBlobKey, parseNodeRank, relativeNameProblem } from "../../src/domain/names.js";

describe("relative_file_name rules", () => {
  const good = ["a", "a/b/c.bin", "checkpoint-100/model-00001-of-00004.safetensors", "ünï/模型 1.bin", "a.b", "...", ".hidden", "a..b", "x".repeat(1024)];
  for (const name of good) test(`accepts ${name.slice(0, 40)}`, () => assert.equal(relativeNameProblem(name), null));

  const bad = ["", "/abs", "a//b", "a/", "./a", "a/./b", "a/..", "../x", "..", ".", "a\\b", "a\u0000b", "a\nb", "a\u007fb", "a\u0085b", "x".repeat(1025), "é".repeat(513), "a\ud800b"];
  for (const name of bad) test(`refuses ${JSON.stringify(name).slice(0, 40)}`, () => assert.notEqual(relativeNameProblem(name), null));

  test("no accepted name can climb out of its folder (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom("a", "b", ".", "..", "", "/", "\\", "\u0000", "é", " "), { maxLength: 12 }), (parts) => {
        const name = parts.join("");
        if (relativeNameProblem(name) !== null) return;
        const segments = name.split("/");
        assert.ok(!name.startsWith("/"));
        assert.ok(segments.every((s) => s !== "" && s !== "." && s !== ".."));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("node_rank", () => {
  for (const ok of ["0", "1", "65535"]) test(`accepts ${ok}`, () => assert.equal(parseNodeRank(ok), Number(ok)));
  for (const bad of ["", "-1", "01", "65536", "1.0", "1e3", " 1", "0x1", "99999"])
    test(`refuses ${JSON.stringify(bad)}`, () => assert.throws(() => parseNodeRank(bad), /node_rank/));
});

describe("keys and checkpoints", () => {
  test("blob keys round-trip and follow Baseten's layout", () => {
    const key = blobKeyOf("p1", "j1", 3, "checkpoint-1/a b.bin");
    assert.equal(key, "training_projects/p1/jobs/j1/rank-3/checkpoint-1/a b.bin");
    assert.deepEqual(parseBlobKey(key), { projectId: "p1", jobId: "j1", nodeRank: 3, relativeName: "checkpoint-1/a b.bin" });
    assert.equal(parseBlobKey("training_projects/p1/jobs/j1/rank-3/../x"), null);
    assert.equal(parseBlobKey("training_projects/p1/jobs/j1/rank-70000/x"), null);
    assert.equal(parseBlobKey("elsewhere/x"), null);
  });
  test("checkpoint ids are top-level folders; root files belong to none", () => {
    assert.equal(checkpointIdOf("checkpoint-5/model.bin"), "checkpoint-5");
    assert.equal(checkpointIdOf("checkpoint-5/a/b/c.bin"), "checkpoint-5");
    assert.equal(checkpointIdOf("config.json"), null);
    assert.equal(checkpointIdOf("latest"), null);
    assert.deepEqual(ancestorsOf("a/b/c"), ["a", "a/b"]);
    assert.deepEqual(ancestorsOf("a"), []);
  });
});
