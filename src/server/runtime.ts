import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { ServerConfig } from "../config.js";
import { CkptService } from "../domain/service.js";
import { LocalBlobStore } from "../stores/blobs/local.js";
import { UrlSigner, loadOrCreateKeyring } from "../stores/blobs/url-signing.js";
import { SqliteMetadataStore } from "../stores/metadata/sqlite.js";

export interface Runtime {
  service: CkptService;
  signer?: UrlSigner;
  close(): Promise<void>;
}

/** Opens the stores a config names. Today: the embedded default (SQLite + local disk). */
export async function openRuntime(config: ServerConfig): Promise<Runtime> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const metadata = new SqliteMetadataStore(join(config.dataDir, "ckpt.sqlite"));
  const signer = new UrlSigner(loadOrCreateKeyring(config.dataDir));
  const blobs = new LocalBlobStore(config.dataDir, signer, config.publicUrl);
  await blobs.init();
  const service = new CkptService(metadata, blobs, {
    maxPageSize: config.maxPageSize,
    urlTtlSeconds: config.urlTtlSeconds,
    maxFilesPerJob: config.maxFilesPerJob,
  });
  return {
    service,
    signer,
    async close() {
      await blobs.close();
      await metadata.close();
    },
  };
}
