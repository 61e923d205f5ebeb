import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseRangeHeader } from "../../src/server/range.js";

test("Range headers against a 100-byte file", () => {
  const cases: [string | undefined, ReturnType<typeof parseRangeHeader>][] = [
    [undefined, { kind: "full" }],
    ["bytes=0-0", { kind: "partial", start: 0, end: 0 }],
    ["bytes=0-99", { kind: "partial", start: 0, end: 99 }],
    ["bytes=10-", { kind: "partial", start: 10, end: 99 }],
    ["bytes=-10", { kind: "partial", start: 90, end: 99 }],
    ["bytes=-1000", { kind: "partial", start: 0, end: 99 }],
    ["bytes=50-5000", { kind: "partial", start: 50, end: 99 }],
    ["BYTES=1-2", { kind: "partial", start: 1, end: 2 }],
    ["bytes=100-", { kind: "unsatisfiable" }],
    ["bytes=-0", { kind: "unsatisfiable" }],
    ["bytes=9999999999999999-", { kind: "unsatisfiable" }],
    ["bytes=5-1", { kind: "full" }],
    ["bytes=0-1,5-6", { kind: "full" }],
    ["items=0-1", { kind: "full" }],
    ["bytes=-", { kind: "full" }],
    ["bytes=a-b", { kind: "full" }],
  ];
  for (const [header, expected] of cases) assert.deepEqual(parseRangeHeader(header, 100), expected, String(header));
});

test("a satisfiable range always lies inside the file (property)", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 30 }), fc.nat(1_000_000), (suffix, size) => {
      const r = parseRangeHeader(`bytes=${suffix}`, size);
      if (r.kind === "partial") {
        assert.ok(r.start >= 0 && r.start <= r.end && r.end < size, JSON.stringify({ suffix, size, r }));
      }
    }),
    { numRuns: 3000 },
  );
});
