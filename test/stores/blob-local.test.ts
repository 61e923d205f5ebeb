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
