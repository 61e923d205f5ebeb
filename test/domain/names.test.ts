import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { checkpointIdOf } from "../../src/domain/checkpoint-id.js";
import {
  ancestorsOf,
  blobKeyOf,
  checkpointVersionsPrefix,
  jobBlobPrefix,
  parseAnyBlobKey,
  parseBlobKey,
  parseNodeRank,
  parseVersionedBlobKey,
  relativeNameProblem,
  versionedBlobKey,
} from "../../src/domain/names.js";
import { newId } from "../../src/domain/ids.js";

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

describe("versioned blob keys", () => {
  const names = fc.array(fc.constantFrom("a", "b", "ckpt-1", "x.bin", "root.json", "é", "versions", "rank-0", "ckpt", "root"), { minLength: 1, maxLength: 4 }).map((s) => s.join("/"));

  test("round-trip; under the job's prefix; the basename last; a checkpoint's versions in its folder", () => {
    fc.assert(
      fc.property(names, fc.integer({ min: 0, max: 65535 }), (name, rank) => {
        const version = newId(20);
        const key = versionedBlobKey("p1", "j1", rank, name, version);
        assert.ok(key.startsWith(jobBlobPrefix("p1", "j1")));
        assert.equal(key.split("/").at(-1), name.split("/").at(-1));
        assert.deepEqual(parseVersionedBlobKey(key), { projectId: "p1", jobId: "j1", nodeRank: rank, relativeName: name, versionId: version });
        assert.deepEqual(parseAnyBlobKey(key), { projectId: "p1", jobId: "j1", nodeRank: rank, relativeName: name, legacy: false });
        assert.equal(parseBlobKey(key), null, "never read as a legacy key");
        const legacy = blobKeyOf("p1", "j1", rank, name);
        assert.equal(parseVersionedBlobKey(legacy), null, "a legacy key is never read as a version's");
        assert.equal(parseAnyBlobKey(legacy)?.legacy, true);
        const checkpoint = name.includes("/") ? name.split("/")[0]! : null;
        if (checkpoint) assert.ok(key.startsWith(checkpointVersionsPrefix("p1", "j1", rank, checkpoint)));
      }),
      { numRuns: 500 },
    );
  });

  test("no key is another's key or one of its folders: legacy or versioned, any names", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(names, fc.integer({ min: 0, max: 2 }), fc.boolean()), { minLength: 2, maxLength: 8 }), (files) => {
        const keys = files.map(([name, rank, legacy]) => (legacy ? blobKeyOf("p", "j", rank, name) : versionedBlobKey("p", "j", rank, name, newId(20))));
        const versioned = keys.filter((_, i) => !files[i]![2]);
        for (const k of versioned)
          for (const other of keys) {
            if (other === k) continue;
            assert.ok(!other.startsWith(k + "/") && !k.startsWith(other + "/"), `${k} vs ${other}`);
          }
        assert.equal(new Set(versioned).size, versioned.length);
      }),
      { numRuns: 500 },
    );
  });
});
