import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { ServerConfig } from "../config.js";
import { CkptService } from "../domain/service.js";
import { LocalBlobStore } from "../stores/blobs/local.js";
import { S3BlobStore } from "../stores/blobs/s3/blob-store.js";
import type { BlobStore } from "../stores/blobs/store.js";
import type { ServableBlobStore } from "../domain/blob-serving.js";
import { signedBlobUrls } from "./blob-urls.js";
import { UrlSigner, loadOrCreateKeyring, rotateKeyring } from "./url-signing.js";
import { PostgresMetadataStore } from "../stores/metadata/postgres.js";
import { SqliteMetadataStore } from "../stores/metadata/sqlite.js";
import type { MetadataStore } from "../stores/metadata/store.js";
import type { ServerMetrics } from "./metrics.js";

export interface Runtime {
  service: CkptService;
  /** Present when this server serves blobs itself (the local blob store). */
  signer?: UrlSigner;
  /** The same store as the service's, as the blob routes see it; present exactly when `signer` is. */
  servedBlobs?: ServableBlobStore;
  close(): Promise<void>;
}

/** `ckpt admin rotate-url-secret`: a new current secret in the data directory's keyring. */
export { rotateKeyring };

/** Opens the metadata store a config names: PostgreSQL when a database URL is set, else SQLite. */
export async function openMetadataStore(config: ServerConfig): Promise<MetadataStore> {
  if (config.databaseUrl) return PostgresMetadataStore.open(config.databaseUrl);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  return new SqliteMetadataStore(join(config.dataDir, "ckpt.sqlite"));
}

/**
 * Opens the stores a config names: the embedded default (SQLite + local disk) or PostgreSQL + S3.
 * With `metrics`, this composition root is where both stores are wrapped, once, to be timed.
 */
export async function openRuntime(config: ServerConfig, options: { metrics?: ServerMetrics } = {}): Promise<Runtime> {
  const opened = await openMetadataStore(config);
  const metadata = options.metrics ? options.metrics.instrumentMetadata(opened) : opened;
  let blobs: BlobStore;
  let signer: UrlSigner | undefined;
  let servedBlobs: ServableBlobStore | undefined;
  try {
    if (config.blobStore.kind === "s3") {
      const { kind: _kind, ...s3 } = config.blobStore;
      const store = new S3BlobStore({ ...s3, directPartSizeBytes: config.uploadPartSize });
      await store.init();
      blobs = options.metrics ? options.metrics.instrumentBlobs(store) : store;
    } else {
      mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
      signer = new UrlSigner(loadOrCreateKeyring(config.dataDir));
      const local = new LocalBlobStore(config.dataDir, signedBlobUrls(config.publicUrl, signer), { directPartSizeBytes: config.uploadPartSize });
      await local.init();
      const store = options.metrics ? options.metrics.instrumentBlobs(local) : local;
      blobs = servedBlobs = store;
    }
  } catch (err) {
    await metadata.close();
    throw err;
  }
  const service = new CkptService(metadata, blobs, {
    maxPageSize: config.maxPageSize,
    urlTtlSeconds: config.urlTtlSeconds,
    maxFilesPerJob: config.maxFilesPerJob,
    maxLogLinesPerJob: config.maxLogLinesPerJob,
  });
  return {
    service,
    signer,
    servedBlobs,
    async close() {
      await blobs.close();
      await metadata.close();
    },
  };
}
