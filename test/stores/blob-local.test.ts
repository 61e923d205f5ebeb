import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalBlobStore } from "../../src/stores/blobs/local.js";
import { signedBlobUrls } from "../../src/server/blob-urls.js";
import { UrlSigner } from "../../src/server/url-signing.js";
import { blobStoreSuite } from "./blob-store.suite.js";

blobStoreSuite("LocalBlobStore", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "ckpt-blob-local-"));
  const signer = new UrlSigner({ currentKeyId: "k1", keys: { k1: "ab".repeat(32) } });
  const store = new LocalBlobStore(dataDir, signedBlobUrls("http://127.0.0.1:8787", signer));
  await store.init();
  return {
    store,
    leftovers: () => readdir(join(dataDir, "tmp")),
    async cleanup() {
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
});

test("deleting a version removes the folders it leaves empty, never a neighbour's", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "ckpt-blob-local-"));
  const signer = new UrlSigner({ currentKeyId: "k1", keys: { k1: "ab".repeat(32) } });
  const store = new LocalBlobStore(dataDir, signedBlobUrls("http://127.0.0.1:8787", signer));
  await store.init();
  try {
    const folder = "training_projects/p/jobs/j/versions/rank-0/ckpt/c";
    const [one, two] = [`${folder}/${"1".repeat(20)}/sub/a.bin`, `${folder}/${"2".repeat(20)}/a.bin`];
    for (const key of [one, two]) await store.put(key, Readable.from([Buffer.from(key)]), {});
    await store.delete(one);
    assert.deepEqual(await readdir(join(dataDir, "blobs", folder)), ["2".repeat(20)], "the version's own folders went, its neighbour stays");
    await store.delete(two);
    assert.deepEqual(await readdir(join(dataDir, "blobs")), [], "nothing but empty folders was left, so nothing is");
    // A put into a folder that a delete has just pruned makes it again.
    await store.put(one, Readable.from([Buffer.from("again")]), {});
    assert.equal((await store.stat(one))?.sizeBytes, 5);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
