import assert from "node:assert/strict";
import { test } from "node:test";
import { throttledFetch, TokenBucket } from "../../src/client/sync/throttle.js";

const KiB = 1024;
const MiB = 1024 * KiB;

test("the token bucket lets a quarter second of burst through, then spaces callers out at the rate", () => {
  let now = 0;
  const bucket = new TokenBucket(MiB, () => now);
  assert.equal(bucket.reserve(256 * KiB), 0, "the burst");
  assert.equal(bucket.reserve(512 * KiB), 500, "half a second of debt");
  assert.equal(bucket.reserve(256 * KiB), 750, "a concurrent caller waits behind the first");
  now = 750;
  assert.equal(bucket.reserve(0), 0, "the debt is paid off by then");
  now = 60_000;
  assert.equal(bucket.reserve(256 * KiB), 0);
  assert.equal(bucket.reserve(1), 1000 / MiB, "idle time refills at most the burst");
});

test("throttledFetch passes streamed bodies through byte for byte, in slices, and leaves other bodies alone", async () => {
  const seen: { body: unknown; chunks: number[]; bytes: Buffer }[] = [];
  const inner: typeof fetch = async (_input, init) => {
    const body = init?.body;
    const chunks: Buffer[] = [];
    if (body && typeof (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === "function")
      for await (const chunk of body as AsyncIterable<Uint8Array>) chunks.push(Buffer.from(chunk));
    seen.push({ body, chunks: chunks.map((c) => c.length), bytes: Buffer.concat(chunks) });
    return new Response("ok");
  };
  const limited = throttledFetch(inner, new TokenBucket(1024 * MiB));

  const source = [Buffer.alloc(150 * KiB, 1), Buffer.alloc(10, 2)];
  await limited("http://x/upload", { method: "PUT", body: (async function* () { yield* source; })() as unknown as RequestInit["body"] });
  assert.deepEqual(seen[0]!.chunks, [64 * KiB, 64 * KiB, 22 * KiB, 10]);
  assert.deepEqual(seen[0]!.bytes, Buffer.concat(source));

  await limited("http://x/api", { method: "PATCH", body: '{"a":1}' });
  assert.equal(seen[1]!.body, '{"a":1}');
});

test("at a low rate the slices shrink, so no wait between two of them comes near an idle timeout", () => {
  for (const rate of [1, 7, 100, 10 * KiB, 300 * KiB, MiB]) {
    let now = 0;
    const bucket = new TokenBucket(rate, () => now);
    let longest = 0;
    for (let i = 0; i < 50; i++) {
      const waitMs = bucket.reserve(bucket.sliceBytes);
      longest = Math.max(longest, waitMs);
      now += waitMs;
    }
    assert.ok(bucket.sliceBytes >= 1 && bucket.sliceBytes <= 64 * KiB, `rate ${rate}: slice ${bucket.sliceBytes}`);
    assert.ok(longest <= 1000, `rate ${rate} B/s: a wait of ${longest} ms between slices`);
  }
});
