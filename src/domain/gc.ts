import type { BlobStore } from "../stores/blobs/store.js";
import type { MetadataStore } from "../stores/metadata/store.js";
import { parseAnyBlobKey } from "./names.js";
import type { BlobKeyRef } from "./types.js";

/** Keys looked up in the metadata store per round trip. */
const LOOKUP_BATCH = 500;
/**
 * A blob write (an upload between its first byte and its commit) protects its key from gc for
 * this long. Uploads have no total time limit, but one that has not committed after a week died
 * with its server; its key is then an orphan like any other.
 */
const BLOB_WRITE_PROTECTION_MS = 7 * 24 * 3600 * 1000;

export interface GcReport {
  /** Jobs whose delete was interrupted (marked deleted, bytes or rows left). */
  interruptedDeletes: number;
  /** Temporary upload files (local) or multipart uploads (S3) removed; 0 in a dry run. */
  temporaryRemoved: number;
  orphans: { key: string; sizeBytes: number; action: "removed" | "kept: too young" | "would remove" }[];
}

export interface GcStores {
  metadata: MetadataStore;
  blobs: BlobStore;
  /** What a starting server runs (CkptService.recover): sweeps temporary data, finishes deletes. */
  recover(options: { temporaryMinAgeMs?: number }): Promise<{ incompleteUploadsRemoved: number }>;
}

/**
 * Garbage is what a crash or a bug can leave: a job marked deleted whose bytes remain, temporary
 * upload data, versions a replacement unreferenced but did not get to delete, and any blob under
 * training_projects/ that no file row references. Orphans are found a page of keys at a time,
 * with one metadata lookup per page (referencedBlobKeys), never a scan per key. Spared even
 * then: a key an upload is writing (its blob write, recorded before the first byte), and a blob
 * younger than `minAgeMs` (a legacy-layout import or anything else a running server may be about
 * to commit).
 */
export async function collectGarbage(stores: GcStores, options: { dryRun: boolean; minAgeMs: number }): Promise<GcReport> {
  const { metadata, blobs } = stores;
  const interruptedDeletes = (await metadata.jobsPendingPurge()).length;
  // Temporary data younger than --min-age may be an upload a running server is writing.
  const temporaryRemoved = options.dryRun ? 0 : (await stores.recover({ temporaryMinAgeMs: options.minAgeMs })).incompleteUploadsRemoved;
  const orphans: GcReport["orphans"] = [];
  const writesSince = new Date(Date.now() - BLOB_WRITE_PROTECTION_MS).toISOString();

  const settle = async (keys: string[]): Promise<void> => {
    const refs: BlobKeyRef[] = [];
    for (const key of keys) {
      const parsed = parseAnyBlobKey(key);
      if (parsed) refs.push({ key, jobId: parsed.jobId, nodeRank: parsed.nodeRank, relativeName: parsed.relativeName, legacy: parsed.legacy });
    }
    // A key of neither layout belongs to no file: an orphan by construction.
    const referenced = refs.length > 0 ? await metadata.referencedBlobKeys(refs, writesSince) : new Set<string>();
    for (const key of keys) {
      if (referenced.has(key)) continue;
      const stat = await blobs.stat(key);
      if (!stat) continue; // removed since it was listed (e.g. by the replacement that unreferenced it)
      const young = Date.now() - stat.lastModified.getTime() < options.minAgeMs;
      const action = young ? "kept: too young" : options.dryRun ? "would remove" : "removed";
      if (action === "removed") await blobs.delete(key);
      orphans.push({ key, sizeBytes: stat.sizeBytes, action });
    }
  };

  let page: string[] = [];
  for await (const key of blobs.listKeys("training_projects/")) {
    page.push(key);
    if (page.length >= LOOKUP_BATCH) {
      await settle(page);
      page = [];
    }
  }
  if (page.length > 0) await settle(page);
  return { interruptedDeletes, temporaryRemoved, orphans };
}
