/**
 * The BlobStore contract, run against every real backend (local disk, S3 on Ceph RGW). Each
 * test opens a fresh store, so tests cannot see each other's blobs.
 *
 *   blobStoreSuite("LocalBlobStore", async () => ({ store, leftovers, cleanup }));
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { BlobIntegrityError, type BlobStore, type PutOptions } from "../../src/stores/blobs/store.js";

export interface BlobStoreFixture {
  store: BlobStore;
  /** What partial uploads have left behind (temp files, staging objects, multipart uploads); [] when idle. */
  leftovers(): Promise<string[]>;
  cleanup(): Promise<void>;
}

export interface BlobStoreSuiteOptions {
  skip?: boolean | string;
  /**
   * presignGet URLs can be fetched as they are. (A local store's URLs need the API server's
   * download route, which the API tests cover.)
   */
  presignedFetch?: boolean;
}

const MIB = 1024 * 1024;
/** More than one multipart part at any part size from 5 to 16 MiB. */
const LARGE = 20 * MIB;
const JOB = "training_projects/p1/jobs/j1";
const KEY = `${JOB}/rank-0/checkpoint-100/model.safetensors`;

const sha256 = (data: Buffer): string => createHash("sha256").update(data).digest("hex");
const flipHex = (hex: string): string => hex.replace(/.$/, (c) => (c === "0" ? "1" : "0"));

/** A body in chunks of `chunkSize` bytes (the last may be shorter). */
function bodyOf(data: Buffer, chunkSize = 256 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += chunkSize) yield data.subarray(i, i + chunkSize);
    })(),
    { objectMode: false },
  );
}

/** A body that sends the first `failAfter` bytes of data, then errors (a client that went away). */
function failingBody(data: Buffer, failAfter: number): Readable {
  return Readable.from(
    (async function* () {
      yield* bodyOf(data.subarray(0, failAfter));
      await sleep(10);
      throw new Error("connection reset by peer");
    })(),
    { objectMode: false },
  );
}

/** A body that sends `bytes` and then hangs until failed (a crash mid-upload, seen from the store). */
function stallingBody(bytes: Buffer): { body: Readable; fail(): void } {
  const body = new Readable({ read() {} });
  for (let i = 0; i < bytes.length; i += MIB) body.push(bytes.subarray(i, i + MIB));
  return { body, fail: () => body.destroy(new Error("connection reset by peer")) };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

async function collect(keys: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const key of keys) out.push(key);
  return out.sort();
}

async function poll<T>(what: string, probe: () => Promise<T | null>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function blobStoreSuite(name: string, open: () => Promise<BlobStoreFixture>, options: BlobStoreSuiteOptions = {}): void {
  const withStore = async (run: (f: BlobStoreFixture) => Promise<void>): Promise<void> => {
    const fixture = await open();
    try {
      await run(fixture);
    } finally {
      await fixture.cleanup();
    }
  };

  /** put, then check the result, stat and a full read. */
  const roundTrip = async (store: BlobStore, key: string, data: Buffer, opts: PutOptions, body = bodyOf(data)): Promise<void> => {
    const result = await store.put(key, body, opts);
    assert.deepEqual(result, { sizeBytes: data.length, sha256: sha256(data) });
    const stat = await store.stat(key);
    assert.ok(stat, "stat finds the blob");
    assert.equal(stat.sizeBytes, data.length);
    assert.ok(stat.lastModified instanceof Date && !Number.isNaN(stat.lastModified.getTime()));
    assert.ok(stat.etag.length > 0, "an etag");
    const back = await readAll(await store.read(key));
    assert.equal(back.length, data.length);
    assert.ok(back.equals(data), "read returns the bytes put");
  };

  /** The blob at key holds exactly data (and nothing partial lingers). */
  const assertHolds = async (f: BlobStoreFixture, key: string, data: Buffer, etag?: string): Promise<void> => {
    const stat = await f.store.stat(key);
    assert.ok(stat, `${key} still exists`);
    assert.equal(stat.sizeBytes, data.length);
    if (etag !== undefined) assert.equal(stat.etag, etag, "etag unchanged");
    assert.ok((await readAll(await f.store.read(key))).equals(data), "bytes unchanged");
    assert.deepEqual(await f.leftovers(), []);
  };

  const assertAbsent = async (f: BlobStoreFixture, key: string): Promise<void> => {
    assert.equal(await f.store.stat(key), null, `nothing at ${key}`);
    assert.deepEqual(await collect(f.store.listKeys(JOB)), [], "nothing listed");
    assert.deepEqual(await f.leftovers(), [], "no partial upload left behind");
  };

  /** Bodies that must be refused, against a blob of `size` bytes. */
  const badPuts = (size: number) => {
    const data = randomBytes(size);
    return [
      { what: "a short body", body: () => bodyOf(data), opts: { expectedSize: size + 1 }, integrity: true },
      { what: "a short body with its digest declared", body: () => bodyOf(data), opts: { expectedSize: size + 1, expectedSha256: sha256(data) }, integrity: true },
      { what: "a body longer than declared", body: () => bodyOf(data), opts: { expectedSize: size - 1 }, integrity: true },
      { what: "a digest mismatch", body: () => bodyOf(data), opts: { expectedSize: size, expectedSha256: flipHex(sha256(data)) }, integrity: true },
      { what: "a digest mismatch with no declared size", body: () => bodyOf(data), opts: { expectedSha256: flipHex(sha256(data)) }, integrity: true },
      { what: "a body that fails midway", body: () => failingBody(data, Math.floor(size / 2)), opts: { expectedSize: size }, integrity: false },
      { what: "a body that fails midway, digest declared", body: () => failingBody(data, Math.floor(size / 2)), opts: { expectedSha256: sha256(data) }, integrity: false },
    ];
  };

  const rejectsAsExpected = async (promise: Promise<unknown>, integrity: boolean): Promise<void> => {
    if (integrity) await assert.rejects(promise, BlobIntegrityError);
    else await assert.rejects(promise, /connection reset by peer/);
  };

  describe(name, { skip: options.skip }, () => {
    test("checkHealth answers on a usable store, and rejects once its signal has aborted", () =>
      withStore(async ({ store }) => {
        await store.checkHealth(AbortSignal.timeout(5000));
        await assert.rejects(store.checkHealth(AbortSignal.abort(new Error("gave up"))));
      }));

    describe("put, stat and read", () => {
      test("an empty body", () =>
        withStore(async ({ store }) => {
          await roundTrip(store, KEY, Buffer.alloc(0), { expectedSize: 0, expectedSha256: sha256(Buffer.alloc(0)) });
        }));

      test("one byte", () =>
        withStore(async ({ store }) => {
          await roundTrip(store, KEY, Buffer.from([0xa5]), { expectedSize: 1 });
        }));

      test("20 MiB (several multipart parts) with size and digest declared", () =>
        withStore(async ({ store }) => {
          const data = randomBytes(LARGE);
          await roundTrip(store, KEY, data, { expectedSize: data.length, expectedSha256: sha256(data) });
        }));

      test("20 MiB in odd-sized chunks with nothing declared", () =>
        withStore(async ({ store }) => {
          const data = randomBytes(LARGE + 12345);
          await roundTrip(store, KEY, data, {}, bodyOf(data, 100_003));
        }));

      test("a body of exactly 8 MiB and of 8 MiB + 1 byte (part-size edges)", () =>
        withStore(async ({ store }) => {
          for (const size of [8 * MIB, 8 * MIB + 1, 5 * MIB]) {
            const data = randomBytes(size);
            await roundTrip(store, `${JOB}/rank-0/edge-${size}.bin`, data, { expectedSize: size }, bodyOf(data, MIB));
          }
        }));

      test("keys with unicode, spaces, '+', '~', '%' and deep paths", () =>
        withStore(async (f) => {
          const keys = [
            `${JOB}/rank-0/données/模型 shard+1~final%20.bin`,
            `${JOB}/rank-0/a b/c+d/e~f/g=h&i/j'k(l)m!n*o/p$q,r;s@t/😀.json`,
            `${JOB}/rank-3/${Array.from({ length: 30 }, (_, i) => `d${i}`).join("/")}/deep.bin`,
          ];
          for (const [i, key] of keys.entries()) await roundTrip(f.store, key, Buffer.from(`file ${i}`), { expectedSize: 6 });
          assert.deepEqual(await collect(f.store.listKeys(JOB)), [...keys].sort());
        }));

      test("stat of a missing key is null", () =>
        withStore(async ({ store }) => {
          assert.equal(await store.stat(KEY), null);
        }));

      test("ranged reads return exactly the requested bytes", () =>
        withStore(async ({ store }) => {
          const data = randomBytes(9 * MIB + 17);
          await store.put(KEY, bodyOf(data), { expectedSize: data.length });
          const size = data.length;
          const ranges = [
            { start: 0, end: 0 },
            { start: 5, end: 9 },
            { start: 8 * MIB - 3, end: 8 * MIB + 3 }, // across a part boundary
            { start: 1000, end: size - 1 }, // open-ended, resolved by the caller
            { start: size - 1, end: size - 1 }, // the last byte
            { start: 0, end: size - 1 },
          ];
          for (const range of ranges) {
            const got = await readAll(await store.read(KEY, range));
            assert.ok(got.equals(data.subarray(range.start, range.end + 1)), `bytes ${range.start}-${range.end}`);
          }
        }));
    });

    describe("failed puts are all-or-nothing", () => {
      for (const size of [1000, LARGE]) {
        const label = size === LARGE ? "20 MiB" : "1000 B";
        for (const bad of badPuts(size)) {
          test(`${bad.what} (${label}) is rejected and leaves no blob`, () =>
            withStore(async (f) => {
              await rejectsAsExpected(f.store.put(KEY, bad.body(), bad.opts), bad.integrity);
              await assertAbsent(f, KEY);
            }));
        }
        test(`a failed replacement (${label}) leaves the previous version intact`, () =>
          withStore(async (f) => {
            const previous = randomBytes(3 * MIB + 5);
            await f.store.put(KEY, bodyOf(previous), { expectedSize: previous.length });
            const etag = (await f.store.stat(KEY))!.etag;
            for (const bad of badPuts(size)) {
              await rejectsAsExpected(f.store.put(KEY, bad.body(), bad.opts), bad.integrity);
              await assertHolds(f, KEY, previous, etag);
            }
          }));
      }
    });

    describe("replace and delete", () => {
      test("a replacement's bytes win, and the etag changes", () =>
        withStore(async ({ store }) => {
          const versions = [randomBytes(100), randomBytes(LARGE), randomBytes(7), Buffer.alloc(0)];
          const etags = new Set<string>();
          for (const data of versions) {
            await roundTrip(store, KEY, data, { expectedSize: data.length, expectedSha256: sha256(data) });
            etags.add((await store.stat(KEY))!.etag);
          }
          assert.equal(etags.size, versions.length, "every version has its own etag");
        }));

      test("delete removes the blob; deleting a missing blob is fine", () =>
        withStore(async (f) => {
          await f.store.put(KEY, bodyOf(Buffer.from("x")), {});
          await f.store.delete(KEY);
          assert.equal(await f.store.stat(KEY), null);
          await f.store.delete(KEY);
          await f.store.delete(`${JOB}/rank-9/never-existed`);
          assert.deepEqual(await collect(f.store.listKeys(JOB)), []);
        }));

      test("deletePrefix removes exactly that folder, with or without a trailing slash", () =>
        withStore(async ({ store }) => {
          const keys = [
            "training_projects/p1/jobs/j1/rank-0/a.bin",
            "training_projects/p1/jobs/j1/rank-1/b/c.bin",
            "training_projects/p1/jobs/j10/rank-0/a.bin", // shares the string prefix "…/j1"
            "training_projects/p1/jobs/j2/rank-0/a.bin",
            "training_projects/p1/jobs/j2/rank-0x/a.bin",
            "training_projects/p2/jobs/j1/rank-0/a.bin",
          ];
          for (const key of keys) await store.put(key, bodyOf(Buffer.from(key)), {});
          await store.deletePrefix("training_projects/p1/jobs/j1/");
          await store.deletePrefix("training_projects/p1/jobs/j2/rank-0");
          await store.deletePrefix("training_projects/p1/jobs/j3/"); // nothing there
          assert.deepEqual(await collect(store.listKeys("training_projects")), [
            "training_projects/p1/jobs/j10/rank-0/a.bin",
            "training_projects/p1/jobs/j2/rank-0x/a.bin",
            "training_projects/p2/jobs/j1/rank-0/a.bin",
          ]);
          for (const key of keys.slice(2))
            if (!key.includes("/j2/rank-0/")) assert.ok(await store.stat(key), `${key} survives`);
        }));

      test("deletePrefix and listKeys go past 1000 keys (paging)", () =>
        withStore(async ({ store }) => {
          const keys = Array.from({ length: 1005 }, (_, i) => `${JOB}/rank-0/shard-${String(i).padStart(5, "0")}.json`);
          const queue = [...keys];
          await Promise.all(
            Array.from({ length: 32 }, async () => {
              for (let key = queue.pop(); key !== undefined; key = queue.pop()) await store.put(key, bodyOf(Buffer.from("{}")), {});
            }),
          );
          await store.put("training_projects/p1/jobs/j2/rank-0/keep.json", bodyOf(Buffer.from("{}")), {});
          assert.deepEqual(await collect(store.listKeys(`${JOB}/`)), keys);
          await store.deletePrefix(`${JOB}/`);
          assert.deepEqual(await collect(store.listKeys(JOB)), []);
          assert.deepEqual(await collect(store.listKeys("training_projects/p1/jobs")), ["training_projects/p1/jobs/j2/rank-0/keep.json"]);
        }));
    });

    describe("listKeys", () => {
      test("lists every key in a folder (with or without '/'), nothing outside it, and nothing for a missing folder", () =>
        withStore(async ({ store }) => {
          const inside = [`${JOB}/rank-0/a`, `${JOB}/rank-0/b/c/d`, `${JOB}/rank-12/e`];
          const outside = ["training_projects/p1/jobs/j10/rank-0/a", "training_projects/p1/jobs/j1x"];
          for (const key of [...inside, ...outside]) await store.put(key, bodyOf(Buffer.from("x")), {});
          assert.deepEqual(await collect(store.listKeys(JOB)), inside);
          assert.deepEqual(await collect(store.listKeys(`${JOB}/`)), inside);
          assert.deepEqual(await collect(store.listKeys(`${JOB}/rank-0`)), inside.slice(0, 2));
          assert.deepEqual(await collect(store.listKeys("training_projects/p9")), []);
        }));
    });

    describe("sweepIncomplete", () => {
      test("removes nothing from an idle store", () =>
        withStore(async (f) => {
          await f.store.put(KEY, bodyOf(Buffer.from("kept")), {});
          assert.equal(await f.store.sweepIncomplete(), 0);
          assert.ok(await f.store.stat(KEY));
        }));

      for (const declared of [false, true]) {
        test(`removes the partial upload of a put that stalled midway${declared ? " (digest declared)" : ""}`, () =>
          withStore(async (f) => {
            const data = randomBytes(LARGE);
            // 9 MiB sent, then silence: as if the server had crashed mid-upload.
            const stalled = stallingBody(data.subarray(0, 9 * MIB));
            const put = f.store.put(KEY, stalled.body, declared ? { expectedSha256: sha256(data) } : { expectedSize: LARGE });
            put.catch(() => {}); // observed below
            await poll("a partial upload to appear", async () => ((await f.leftovers()).length > 0 ? true : null));
            assert.ok((await f.store.sweepIncomplete()) >= 1, "sweep reports what it removed");
            assert.deepEqual(await f.leftovers(), []);
            stalled.fail();
            await assert.rejects(put, /connection reset by peer/);
            await assertAbsent(f, KEY);
          }));
      }
    });

    describe("presignGet", () => {
      test("returns an absolute URL, synchronously", () =>
        withStore(async ({ store }) => {
          const url = store.presignGet(KEY, 3600);
          assert.equal(typeof url, "string");
          assert.match(new URL(url).protocol, /^https?:$/);
          assert.notEqual(store.presignGet(KEY, 3600), store.presignGet(`${KEY}.other`, 3600));
        }));

      const fetchOnly = { skip: options.presignedFetch ? false : "presigned URLs of this store need the API server" };

      test("a plain fetch downloads the exact bytes", fetchOnly, () =>
        withStore(async ({ store }) => {
          const files = new Map<string, Buffer>([
            [KEY, randomBytes(LARGE)],
            [`${JOB}/rank-0/empty`, Buffer.alloc(0)],
            [`${JOB}/rank-1/données/模型 shard+1~final%20.bin`, randomBytes(1000)],
          ]);
          for (const [key, data] of files) {
            await store.put(key, bodyOf(data), { expectedSize: data.length });
            const response = await fetch(store.presignGet(key, 600));
            assert.equal(response.status, 200, key);
            assert.ok(Buffer.from(await response.arrayBuffer()).equals(data), `bytes of ${key}`);
          }
        }));

      test("a URL with one signature character changed is refused (403)", fetchOnly, () =>
        withStore(async ({ store }) => {
          await store.put(KEY, bodyOf(Buffer.from("secret")), {});
          const url = new URL(store.presignGet(KEY, 600));
          assert.equal((await fetch(url)).status, 200);
          const signatureParam = [...url.searchParams.keys()].find((k) => /signature/i.test(k))!;
          const signature = url.searchParams.get(signatureParam)!;
          const flipped = signature.slice(0, -1) + (signature.endsWith("0") ? "1" : "0");
          const tampered = url.href.replace(`${signatureParam}=${signature}`, `${signatureParam}=${flipped}`);
          assert.notEqual(tampered, url.href);
          const response = await fetch(tampered);
          assert.equal(response.status, 403);
          await response.arrayBuffer();
        }));

      test("an expired URL is refused (403)", fetchOnly, () =>
        withStore(async ({ store }) => {
          await store.put(KEY, bodyOf(Buffer.from("secret")), {});
          const url = store.presignGet(KEY, 1);
          assert.equal((await fetch(url)).status, 200, "valid before it expires");
          await sleep(2100);
          const response = await fetch(url);
          assert.equal(response.status, 403);
          await response.arrayBuffer();
        }));

      test("a URL for one key edited to name another is refused (403)", fetchOnly, () =>
        withStore(async ({ store }) => {
          const other = `${JOB}/rank-0/checkpoint-100/optimizer.pt`;
          await store.put(KEY, bodyOf(Buffer.from("a")), {});
          await store.put(other, bodyOf(Buffer.from("b")), {});
          const url = new URL(store.presignGet(KEY, 600));
          url.pathname = url.pathname.replace("model.safetensors", "optimizer.pt");
          assert.ok(url.pathname.endsWith("/optimizer.pt"));
          const response = await fetch(url);
          assert.equal(response.status, 403);
          await response.arrayBuffer();
        }));
    });
  });
}
