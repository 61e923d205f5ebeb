import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { isValidNodeRank, unsafeRelativeNameReason } from "../../src/client/relative-name.js";
import { MAX_NODE_RANK, parseNodeRank, relativeNameProblem } from "../../src/domain/names.js";
import { isSha256Hex } from "../../src/domain/digests.js";

/**
 * One table for the server (relativeNameProblem: uploads are refused) and the SDK
 * (unsafeRelativeNameReason: listed names that would not become a safe local path are refused).
 * They must agree: a name the server accepts has to be downloadable, and one the SDK refuses must
 * never get in.
 */
const NAMES: [name: string, accepted: boolean][] = [
  ["a", true],
  ["a/b/c.bin", true],
  ["checkpoint-100/model-00001-of-00004.safetensors", true],
  ["ünï/模型 1.bin", true],
  ["emoji/🙂.bin", true],
  ["a.b", true],
  ["...", true],
  [".hidden", true],
  ["a..b", true],
  ["ab:c/d", true], // a colon after more than one letter is no drive
  ["a:b/c", false],
  ["step:100", true],
  ["x".repeat(1024), true],
  ["é".repeat(512), true],
  ["", false],
  ["/abs", false],
  ["a//b", false],
  ["a/", false],
  ["./a", false],
  ["a/./b", false],
  ["a/..", false],
  ["../x", false],
  ["..", false],
  [".", false],
  ["a\\b", false],
  ["C:x", false], // relative to drive C's current folder on Windows
  ["c:/x", false],
  ["Z:", false],
  ["a\u0000b", false],
  ["a\nb", false],
  ["a\rb", false],
  ["a\tb", false],
  ["a\u007fb", false],
  ["a\u0085b", false],
  ["a\u009fb", false],
  ["x".repeat(1025), false],
  ["é".repeat(513), false],
  ["a\ud800b", false], // a lone surrogate is no UTF-8
  ["a\udc00", false],
];

describe("file names: one table through the server's rule and the SDK's", () => {
  for (const [name, accepted] of NAMES) {
    test(`${accepted ? "accepts" : "refuses"} ${JSON.stringify(name).slice(0, 40)}`, () => {
      assert.equal(relativeNameProblem(name) === null, accepted, `server: ${relativeNameProblem(name)}`);
      assert.equal(unsafeRelativeNameReason(name) === null, accepted, `SDK: ${unsafeRelativeNameReason(name)}`);
    });
  }
  test("the SDK refuses what is not a string", () => {
    for (const value of [undefined, null, 1, {}, ["a"]]) assert.notEqual(unsafeRelativeNameReason(value), null);
  });
  test("server and SDK agree on any name (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom("a", "C", ":", ".", "..", "", "/", "\\", "\u0000", "\u0085", "é", "\ud800", "\udc00", " "), { maxLength: 12 }), (parts) => {
        const name = parts.join("");
        assert.equal(relativeNameProblem(name) === null, unsafeRelativeNameReason(name) === null, JSON.stringify(name));
      }),
      { numRuns: 3000 },
    );
  });
});

describe("node ranks: the path parser and the SDK's check agree", () => {
  const RANKS: [raw: string, accepted: boolean][] = [
    ["0", true],
    ["1", true],
    [String(MAX_NODE_RANK), true],
    [String(MAX_NODE_RANK + 1), false],
    ["-1", false],
    ["1.5", false],
  ];
  for (const [raw, accepted] of RANKS)
    test(`${accepted ? "accepts" : "refuses"} ${raw}`, () => {
      assert.equal(isValidNodeRank(Number(raw)), accepted);
      if (accepted) assert.equal(parseNodeRank(raw), Number(raw));
      else assert.throws(() => parseNodeRank(raw), /node_rank/);
    });
});

describe("SHA-256 format", () => {
  test("64 lowercase hex characters, nothing else", () => {
    assert.ok(isSha256Hex("a".repeat(64)));
    assert.ok(isSha256Hex("0123456789abcdef".repeat(4)));
    for (const bad of ["A".repeat(64), "a".repeat(63), "a".repeat(65), "g".repeat(64), ` ${"a".repeat(63)}`, "", undefined, null, 64])
      assert.equal(isSha256Hex(bad), false, String(bad));
  });
});
