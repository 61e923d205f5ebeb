/**
 * S3BlobStore against a real, signature-checking S3 (a throwaway Ceph RGW, one per file): the
 * shared BlobStore suite, then what is specific to S3 (object layout and metadata, multipart
 * copy, paging, age-gated sweeping, direct-upload helpers, credential refresh).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import {
  AbortMultipartUploadCommand,
  DeleteObjectsCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import {
  S3BlobStore,
  credentialRefreshDelayMs,
  type S3BlobStoreConfig,
} from "../../src/stores/blobs/s3/blob-store.js";
import { parseS3Url } from "../../src/config.js";
import { rgwAvailable, startRgw, type RgwInstance } from "../harness/rgw.js";
import { requireOrSkip } from "../harness/required.js";
import { blobStoreSuite, type BlobStoreFixture } from "./blob-store.suite.js";

const MIB = 1024 * 1024;
const PREFIX = "ckpt/";
const KEY = "training_projects/p1/jobs/j1/rank-0/checkpoint-100/model.safetensors";

const haveRgw = requireOrSkip("rgw", rgwAvailable());
let rgw: RgwInstance | null = null;
let admin: S3Client | null = null;

before(async () => {
  if (!haveRgw) return;
  rgw = await startRgw();
  assert.ok(rgw, "RGW is installed but did not start");
  admin = new S3Client(rgw.s3Config);
});

after(async () => {
  admin?.destroy();
  await rgw?.stop();
});

const sha256 = (data: Buffer): string => createHash("sha256").update(data).digest("hex");
const bodyOf = (data: Buffer): Readable => Readable.from([data], { objectMode: false });

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

function storeConfig(bucket: string, overrides: Partial<S3BlobStoreConfig> = {}): S3BlobStoreConfig {
  const s3 = rgw!;
  return {
    bucket,
    prefix: PREFIX,
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    sweepMinAgeSeconds: 0,
    ...overrides,
  };
}

/** Multipart uploads anywhere in the bucket and objects in the staging area. */
async function leftovers(bucket: string, prefix = PREFIX): Promise<string[]> {
  const uploads = await admin!.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  const staged = await admin!.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}.ckpt-staging/` }));
  return [
    ...(uploads.Uploads ?? []).map((u) => `multipart upload of ${u.Key}`),
    ...(staged.Contents ?? []).map((o) => `staging object ${o.Key}`),
  ];
}

/** Empties a bucket (memstore keeps every object in RAM until the RGW stops). */
async function emptyBucket(bucket: string): Promise<void> {
  const uploads = await admin!.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  for (const u of uploads.Uploads ?? [])
    await admin!.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId })).catch(() => {});
  for (;;) {
    const page = await admin!.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
    if (keys.length === 0) return;
    await admin!.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
  }
}

async function openStore(overrides: Partial<S3BlobStoreConfig> = {}): Promise<BlobStoreFixture & { s3: S3BlobStore; bucket: string }> {
  const bucket = await rgw!.createBucket();
  const store = new S3BlobStore(storeConfig(bucket, overrides));
  await store.init();
  return {
    store,
    s3: store,
    bucket,
    leftovers: () => leftovers(bucket, overrides.prefix ?? PREFIX),
    async cleanup() {
      await store.close();
      await emptyBucket(bucket);
    },
  };
}

blobStoreSuite("S3BlobStore on Ceph RGW", () => openStore(), { skip: !haveRgw, presignedFetch: true });

describe("parseS3Url", () => {
  test("splits bucket and prefix, normalising the prefix to '' or 'a/b/'", () => {
    assert.deepEqual(parseS3Url("s3://ckpt-data"), { bucket: "ckpt-data", prefix: "" });
    assert.deepEqual(parseS3Url("s3://ckpt-data/"), { bucket: "ckpt-data", prefix: "" });
    assert.deepEqual(parseS3Url("s3://ckpt-data/some/prefix"), { bucket: "ckpt-data", prefix: "some/prefix/" });
    assert.deepEqual(parseS3Url("S3://my.bucket/p/"), { bucket: "my.bucket", prefix: "p/" });
    assert.deepEqual(parseS3Url("s3://b12/a b+c%20"), { bucket: "b12", prefix: "a b+c%20/" });
  });

  test("refuses other schemes, bad bucket names and odd prefixes", () => {
    for (const bad of [
      "",
      "ckpt-data",
      "https://ckpt-data/x",
      "s3://",
      "s3:///prefix",
      "s3://ab",
      "s3://-bucket",
      "s3://bucket?region=x",
      "s3://bucket/a//b",
      "s3://bucket/a/../b",
      "s3://bucket/./b",
      "s3://bucket/a#frag",
    ])
      assert.throws(() => parseS3Url(bad), Error, bad);
  });
});

test("credentialRefreshDelayMs: half the remaining life, by 10 minutes before expiry, not sooner than 30 s", () => {
  const now = Date.parse("2025-01-01T00:00:00Z");
  const at = (ms: number) => new Date(now + ms);
  assert.equal(credentialRefreshDelayMs(at(6 * 3600_000), now), 3 * 3600_000);
  assert.equal(credentialRefreshDelayMs(at(15 * 60_000), now), 5 * 60_000);
  assert.equal(credentialRefreshDelayMs(at(5 * 60_000), now), 30_000);
  assert.equal(credentialRefreshDelayMs(at(3000), now), 1500, "very short-lived: halfway");
  assert.equal(credentialRefreshDelayMs(at(-1000), now), 30_000, "already expired: retry every 30 s");
  assert.equal(credentialRefreshDelayMs(at(365 * 24 * 3600_000), now), 2 ** 31 - 1, "setTimeout's limit");
});

describe("S3BlobStore specifics", { skip: !haveRgw }, () => {
  const withStore = async (
    run: (f: Awaited<ReturnType<typeof openStore>>) => Promise<void>,
    overrides: Partial<S3BlobStoreConfig> = {},
  ): Promise<void> => {
    const fixture = await openStore(overrides);
    try {
      await run(fixture);
    } finally {
      await fixture.cleanup();
    }
  };

  test("objects live at <prefix><key> with x-amz-meta-sha256, whichever way they were put", () =>
    withStore(async ({ store, bucket }) => {
      const cases = [
        { name: "small.bin", data: randomBytes(1000), declare: false }, // one PutObject
        { name: "large-declared.bin", data: randomBytes(17 * MIB), declare: true }, // multipart to the key
        { name: "large-undeclared.bin", data: randomBytes(17 * MIB), declare: false }, // staged, then copied
      ];
      for (const c of cases) {
        const key = `training_projects/p1/jobs/j1/rank-0/${c.name}`;
        await store.put(key, bodyOf(c.data), c.declare ? { expectedSha256: sha256(c.data) } : {});
        const head = await admin!.send(new HeadObjectCommand({ Bucket: bucket, Key: PREFIX + key }));
        assert.equal(head.ContentLength, c.data.length, c.name);
        assert.equal(head.Metadata?.sha256, sha256(c.data), c.name);
        const response = await fetch(store.presignGet(key, 600));
        assert.equal(response.headers.get("x-amz-meta-sha256"), sha256(c.data), c.name);
        assert.ok(Buffer.from(await response.arrayBuffer()).equals(c.data), c.name);
      }
      assert.deepEqual(await leftovers(bucket), []);
    }));

  test("staged bodies above the copy threshold are copied part by part", () =>
    withStore(
      async ({ store, s3, bucket }) => {
        const data = randomBytes(23 * MIB + 7);
        assert.deepEqual(await store.put(KEY, bodyOf(data), { expectedSize: data.length }), { sizeBytes: data.length, sha256: sha256(data) });
        assert.ok((await readAll(await store.read(KEY))).equals(data));
        const head = await s3.head(KEY);
        assert.equal(head?.metadata.sha256, sha256(data));
        assert.match(head?.etag ?? "", /-5"$/, "a five-part object");
        assert.deepEqual(await leftovers(bucket), []);
      },
      { multipartCopyThresholdBytes: 6 * MIB, copyPartSizeBytes: 5 * MIB },
    ));

  test("with an empty prefix, keys sit at the bucket root and listKeys('') skips the staging area", () =>
    withStore(
      async ({ store, bucket }) => {
        await admin!.send(new PutObjectCommand({ Bucket: bucket, Key: ".ckpt-staging/orphan", Body: "x" }));
        await store.put(KEY, bodyOf(Buffer.from("x")), {});
        const listed = await admin!.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "training_projects/" }));
        assert.deepEqual(listed.Contents?.map((o) => o.Key), [KEY]);
        const keys: string[] = [];
        for await (const key of store.listKeys("")) keys.push(key);
        assert.deepEqual(keys, [KEY]);
        assert.equal(await store.sweepIncomplete(), 1, "the orphaned staging object");
      },
      { prefix: "" },
    ));

  test("objects outside the store prefix are neither listed nor deleted", () =>
    withStore(async ({ store, bucket }) => {
      await admin!.send(new PutObjectCommand({ Bucket: bucket, Key: `other/${KEY}`, Body: "x" }));
      await admin!.send(new PutObjectCommand({ Bucket: bucket, Key: KEY, Body: "x" }));
      await store.put(KEY, bodyOf(Buffer.from("ours")), {});
      await store.deletePrefix("training_projects/p1/");
      const all = await admin!.send(new ListObjectsV2Command({ Bucket: bucket }));
      assert.deepEqual(all.Contents?.map((o) => o.Key).sort(), [`other/${KEY}`, KEY]);
    }));

  test("sweepIncomplete leaves uploads younger than sweepMinAgeSeconds alone", () =>
    withStore(
      async ({ s3, bucket }) => {
        await s3.createMultipartUpload(KEY);
        await admin!.send(new PutObjectCommand({ Bucket: bucket, Key: `${PREFIX}.ckpt-staging/young`, Body: "x" }));
        assert.equal(await s3.sweepIncomplete(), 0);
        assert.equal((await leftovers(bucket)).length, 2);
        const eager = new S3BlobStore(storeConfig(bucket, { sweepMinAgeSeconds: 0 }));
        await eager.init();
        assert.equal(await eager.sweepIncomplete(), 2);
        await eager.close();
        assert.deepEqual(await leftovers(bucket), []);
      },
      { sweepMinAgeSeconds: 3600 },
    ));

  test("direct-upload helpers: presigned PUT, presigned multipart parts, complete, abort, head", () =>
    withStore(async ({ s3, bucket }) => {
      const small = randomBytes(1234);
      const put = await fetch(s3.presignPut(KEY, 600), { method: "PUT", body: small });
      assert.equal(put.status, 200);
      assert.equal((await s3.head(KEY))?.sizeBytes, small.length);

      const big = randomBytes(5 * MIB + 3);
      const key = `${KEY}.2`;
      const uploadId = await s3.createMultipartUpload(key, { sha256: sha256(big) });
      const parts = [];
      for (const [i, chunk] of [big.subarray(0, 5 * MIB), big.subarray(5 * MIB)].entries()) {
        const response = await fetch(s3.presignUploadPart(key, uploadId, i + 1, 600), { method: "PUT", body: chunk });
        assert.equal(response.status, 200);
        parts.push({ partNumber: i + 1, etag: response.headers.get("etag")! });
      }
      await s3.completeMultipartUpload(key, uploadId, parts.reverse());
      const head = await s3.head(key);
      assert.equal(head?.sizeBytes, big.length);
      assert.deepEqual(head?.metadata, { sha256: sha256(big) });
      assert.ok((await readAll(await s3.read(key))).equals(big));

      const abandoned = await s3.createMultipartUpload(`${KEY}.3`);
      await s3.abortMultipartUpload(`${KEY}.3`, abandoned);
      await s3.abortMultipartUpload(`${KEY}.3`, abandoned); // idempotent
      assert.equal(await s3.head(`${KEY}.3`), null);
      assert.deepEqual(await leftovers(bucket), []);
    }));

  test("presigned URLs are clamped to SigV4's 7 days (RGW refuses longer ones)", () =>
    withStore(async ({ store }) => {
      await store.put(KEY, bodyOf(Buffer.from("x")), {});
      const url = new URL(store.presignGet(KEY, 30 * 24 * 3600));
      assert.equal(url.searchParams.get("X-Amz-Expires"), "604800");
      assert.equal((await fetch(url)).status, 200);
    }));

  test("read of a missing key rejects", () =>
    withStore(async ({ store }) => {
      await assert.rejects(store.read(KEY));
    }));

  test("init fails fast, naming the bucket, when the bucket does not exist", async () => {
    const store = new S3BlobStore(storeConfig("no-such-bucket-here"));
    await assert.rejects(store.init(), /no-such-bucket-here/);
    await store.close();
  });

  test("init fails fast with wrong credentials", async () => {
    const bucket = await rgw!.createBucket();
    const store = new S3BlobStore(storeConfig(bucket, { credentials: { accessKeyId: "NOPE", secretAccessKey: "nope" } }));
    await assert.rejects(store.init(), /not usable/);
    await store.close();
  });

  test("expiring credentials are refreshed in the background, and URLs never outlive them", () => {
    const s3 = rgw!;
    // Until the store is open, the provider hands out credentials with 3 s left; then a fresh two
    // hours. (Not counted by calls: the SDK itself re-reads credentials that are near expiry.)
    let rotated = false;
    const provider = async () => {
      const expiration = new Date(Date.now() + (rotated ? 2 * 3600_000 : 3000));
      return { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, expiration };
    };
    return withStore(
      async ({ store }) => {
        rotated = true;
        const early = Number(new URL(store.presignGet(KEY, 3600)).searchParams.get("X-Amz-Expires"));
        assert.ok(early >= 1 && early <= 3, `clamped to the credentials' 3 s (got ${early})`);
        await store.put(KEY, bodyOf(Buffer.from("x")), {});
        await sleep(2500); // the refresh runs halfway, at ~1.5 s
        const url = store.presignGet(KEY, 3600);
        assert.equal(new URL(url).searchParams.get("X-Amz-Expires"), "3600");
        assert.equal((await fetch(url)).status, 200);
      },
      { credentials: provider },
    );
  });
});
