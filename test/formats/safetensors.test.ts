import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PrefixCollector, extractorFor, INDEXED_HEADER_MAX_BYTES } from "../../src/domain/file-facts.js";
import { SAFETENSORS_DTYPE_BITS, firstDuplicateTopLevelKey, parseSafetensorsHeader } from "../../src/formats/safetensors.js";
import { EVERY_DTYPE, HOSTILE_HEADERS, rawSafetensors, safetensorsFile } from "../helpers/safetensors.js";

const parseWhole = (bytes: Buffer) => parseSafetensorsHeader(bytes, bytes.length);

/** What the commit path computes: the collector fed `chunks` in order, then decoded. */
function viaCollector(bytes: Buffer, cuts: number[], sizeHint?: number) {
  const collector = new PrefixCollector(extractorFor("x.safetensors")!, sizeHint);
  let at = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.length)].sort((a, b) => a - b).concat(bytes.length)) {
    if (!collector.offer(bytes.subarray(at, cut))) break;
    at = cut;
  }
  return collector.facts(bytes.length);
}

describe("safetensors header parser", () => {
  test("every dtype of the format, with sub-byte types counted in bits", () => {
    const r = parseWhole(safetensorsFile(EVERY_DTYPE));
    assert.ok(r.ok, r.ok ? "" : r.error);
    assert.equal(r.header.tensors.length, Object.keys(SAFETENSORS_DTYPE_BITS).length);
    assert.equal(r.header.bytesByDtype.F4, 4);
    assert.equal(r.header.bytesByDtype.F6_E3M2, 6);
    assert.equal(r.header.bytesByDtype.BF16, 16);
    assert.equal(r.header.parameterCount, 8 * EVERY_DTYPE.length);
  });

  for (const { name, bytes, reason } of HOSTILE_HEADERS)
    test(`refuses ${name} with its reason`, () => {
      const r = parseWhole(bytes);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.error, reason);
    });

  test("zero-sized tensors and an empty header object are valid; __metadata__ must map strings", () => {
    const r = parseWhole(rawSafetensors(JSON.stringify({ __metadata__: { a: "b" }, e: { dtype: "F32", shape: [0, 3], data_offsets: [0, 0] } }), 0));
    assert.ok(r.ok);
    assert.equal(r.header.parameterCount, 0);
    assert.ok(parseWhole(rawSafetensors("{}      ", 0)).ok);
    const bad = parseWhole(rawSafetensors(JSON.stringify({ __metadata__: { a: 1 } }), 0));
    assert.equal(bad.ok, false);
  });

  test("duplicate detection looks only at top-level keys", () => {
    assert.equal(firstDuplicateTopLevelKey('{"a":{"x":1,"x":2},"b":"a","c":["a","a"]}'), null);
    assert.equal(firstDuplicateTopLevelKey('{"a\\"b":1,"c":{"}":"{"},"a\\"b":2}'), 'a"b');
  });

  test("a header above ckpt's indexing limit is refused without being read", () => {
    const declared = BigInt(INDEXED_HEADER_MAX_BYTES + 8);
    const bytes = rawSafetensors("{}", 0, declared);
    const collector = new PrefixCollector(extractorFor("m.safetensors")!, INDEXED_HEADER_MAX_BYTES * 2);
    assert.equal(collector.offer(bytes), false, "satisfied after the 8-byte length");
    const facts = collector.facts(INDEXED_HEADER_MAX_BYTES * 2);
    assert.match(facts.error ?? "", /indexing limit/);
  });
});

describe("fuzz: headers (fast-check)", () => {
  const runs = Number(process.env.CKPT_FUZZ_RUNS ?? 1) * 300;
  const dtype = fc.constantFrom(...Object.keys(SAFETENSORS_DTYPE_BITS));
  const tensor = fc.record({ name: fc.string({ minLength: 1, maxLength: 12 }), dtype, shape: fc.array(fc.integer({ min: 0, max: 3 }).map((n) => n * 4), { minLength: 1, maxLength: 3 }) });
  const tensors = fc.uniqueArray(tensor, { selector: (t) => t.name, maxLength: 8 }).filter((ts) => ts.every((t) => t.name !== "__metadata__"));

  test("valid files parse, whatever the chunking, to their own tensors and counts", () => {
    fc.assert(
      fc.property(tensors, fc.array(fc.nat({ max: 600 })), (ts, cuts) => {
        const bytes = safetensorsFile(ts);
        const whole = parseWhole(bytes);
        assert.ok(whole.ok, whole.ok ? "" : whole.error);
        assert.deepEqual(whole.header.tensors.map((t) => t.name).sort(), ts.map((t) => t.name).sort());
        assert.equal(whole.header.parameterCount, ts.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0));
        const facts = viaCollector(bytes, cuts, cuts.length % 2 ? bytes.length : undefined);
        assert.equal(facts.error, null);
        assert.equal(facts.format === "safetensors" && facts.header?.parameterCount, whole.header.parameterCount);
      }),
      { numRuns: runs },
    );
  });

  test("corrupted files (flipped bytes, truncation, spliced JSON) never throw: a header or a reason", () => {
    const corruption = fc.oneof(
      fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
      fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
      fc.record({ kind: fc.constant("json" as const), value: fc.json() }),
      fc.record({ kind: fc.constant("length" as const), value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
    );
    fc.assert(
      fc.property(tensors, fc.array(corruption, { minLength: 1, maxLength: 4 }), fc.array(fc.nat({ max: 600 })), (ts, corruptions, cuts) => {
        let bytes = safetensorsFile(ts);
        for (const c of corruptions) {
          if (c.kind === "flip" && bytes.length) bytes[c.at % bytes.length] = c.value;
          if (c.kind === "truncate") bytes = bytes.subarray(0, c.at % (bytes.length + 1));
          if (c.kind === "json") bytes = rawSafetensors(c.value, c.value.length % 17);
          if (c.kind === "length" && bytes.length >= 8) bytes.writeBigUInt64LE(c.value, 0);
        }
        const whole = parseWhole(bytes);
        assert.ok(whole.ok || (typeof whole.error === "string" && whole.error.length > 0 && whole.error.length < 1000));
        const facts = viaCollector(bytes, cuts);
        assert.equal(facts.error === null, whole.ok, `collector and whole-buffer parse agree (${facts.error} / ${whole.ok ? "ok" : whole.error})`);
      }),
      { numRuns: runs },
    );
  });
});

test("a tensor named __proto__ is a tensor like any other (header and shard index)", async () => {
  const { parseSafetensorsIndex } = await import("../../src/formats/safetensors-index.js");
  const r = parseWhole(safetensorsFile([{ name: "__proto__", dtype: "F32", shape: [2] }, { name: "constructor", dtype: "F32", shape: [1] }]));
  assert.ok(r.ok);
  assert.deepEqual(r.header.tensors.map((t) => t.name), ["__proto__", "constructor"]);
  const index = parseSafetensorsIndex(Buffer.from('{"weight_map":{"__proto__":"a.safetensors"}}'), 45);
  assert.ok(index.ok);
  assert.deepEqual(Object.entries(index.index.weightMap), [["__proto__", "a.safetensors"]]);
});
