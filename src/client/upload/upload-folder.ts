import type { CkptClient } from "../api.js";
import { runPool } from "../download/pool.js";
import type { RetryPolicy } from "../download/types.js";
import { scanFolder } from "../sync/scan.js";
import type { CheckpointFile } from "../types.js";
import { unsafeRelativeNameReason } from "../relative-name.js";
import { sha256OfFile } from "./digest.js";
import { headOfGet } from "./put.js";
import { uploadFile, UploadRoute, type UploadPath } from "./upload-file.js";

export interface UploadFolderOptions {
  client: CkptClient;
  projectId: string;
  jobId: string;
  nodeRank: number;
  /** Every regular file under it is uploaded, named by its path relative to it ('/'-separated). */
  dir: string;
  /** Files uploaded at once (default 8). */
  concurrency?: number;
  /** Stream every file through the API server (one PUT each), never the direct protocol. */
  viaServer?: boolean;
  /** Per request; missing fields take DEFAULT_RETRY_POLICY's. */
  retry?: Partial<RetryPolicy>;
  /** Called with every event; must not throw. */
  onEvent?: (event: UploadEvent) => void;
  /** Aborting stops: no new file starts, and the ones in flight fail. */
  signal?: AbortSignal;
}

export type UploadEvent =
  /** The folder was walked and compared with the job's listing. */
  | { type: "planned"; files: number; bytes: number }
  | { type: "uploaded"; name: string; size: number; path: UploadPath }
  /** Listed with the same size and digest already. */
  | { type: "skipped"; name: string; size: number }
  /** One request of the file failed and is tried again after `delayMs`. */
  | { type: "retrying"; name: string; message: string; delayMs: number }
  | { type: "failed"; name: string; message: string };

export interface UploadFolderSummary {
  uploaded: number;
  bytesUploaded: number;
  skipped: number;
  failed: { name: string; message: string }[];
}

/** A file under the folder whose name the server would refuse: nothing was uploaded. */
export class UploadPlanError extends Error {
  override name = "UploadPlanError";
}

/**
 * Uploads a folder as checkpoint files of one job and node rank — the engine of `ckpt push`.
 * A file already listed with the same size and digest is skipped; the others go largest first
 * (the long uploads start at once and the small files fill the gaps around them), `concurrency`
 * at a time, each direct to the blob store where the server offers it (see UploadRoute).
 * A file that fails does not stop the others; the summary lists it.
 */
export async function uploadFolder(options: UploadFolderOptions): Promise<UploadFolderSummary> {
  const emit = (event: UploadEvent): void => options.onEvent?.(event);
  const local = [...(await scanFolder(options.dir)).values()];
  for (const file of local) {
    const problem = unsafeRelativeNameReason(file.name);
    if (problem) throw new UploadPlanError(`cannot upload ${file.name}: ${problem}`);
  }
  const remote = await listedFiles(options);
  local.sort((a, b) => b.size - a.size);
  emit({ type: "planned", files: local.length, bytes: local.reduce((n, f) => n + f.size, 0) });

  const route = new UploadRoute(options.viaServer);
  const summary: UploadFolderSummary = { uploaded: 0, bytesUploaded: 0, skipped: 0, failed: [] };
  await runPool(local, options.concurrency ?? 8, async (f) => {
    try {
      // Hashed up front only to decide a skip; otherwise the upload hashes as it reads.
      let sha256: string | undefined;
      const existing = remote.get(f.name);
      if (existing && existing.size_bytes === f.size) {
        sha256 = await sha256OfFile(f.path);
        if ((await listedSha256(options.client, existing)) === sha256) {
          summary.skipped++;
          emit({ type: "skipped", name: f.name, size: f.size });
          return;
        }
      }
      const target = { projectId: options.projectId, jobId: options.jobId, nodeRank: options.nodeRank, relativeName: f.name, path: f.path };
      const sent = await uploadFile(options.client, target, {
        route,
        sha256,
        retry: options.retry,
        signal: options.signal,
        onRetry: (message, delayMs) => emit({ type: "retrying", name: f.name, message, delayMs }),
      });
      summary.uploaded++;
      summary.bytesUploaded += f.size;
      emit({ type: "uploaded", name: f.name, size: f.size, path: sent.path });
    } catch (err) {
      // Stop starting files; the pool awaits the ones in flight.
      if (options.signal?.aborted) throw err;
      summary.failed.push({ name: f.name, message: (err as Error).message });
      emit({ type: "failed", name: f.name, message: (err as Error).message });
    }
  });
  return summary;
}

async function listedFiles(options: UploadFolderOptions): Promise<Map<string, CheckpointFile>> {
  const remote = new Map<string, CheckpointFile>();
  for await (const f of options.client.listCheckpointFiles({ projectId: options.projectId, jobId: options.jobId }))
    if (f.node_rank === options.nodeRank) remote.set(f.relative_file_name, f);
  return remote;
}

/**
 * The digest a listed file's presigned URL reports (ckpt: x-ckpt-sha256; S3: x-amz-meta-sha256).
 * A one-byte ranged GET, not a HEAD: S3 refuses HEAD with a URL presigned for GET.
 */
async function listedSha256(client: CkptClient, file: CheckpointFile): Promise<string | null> {
  // An empty file has no byte 0 to ask for; its whole body is nothing anyway.
  const head = await headOfGet(client, file.url, file.size_bytes > 0 ? { range: "bytes=0-0" } : {});
  if (!head || head.status < 200 || head.status > 299) return null;
  return head.header("x-ckpt-sha256") ?? head.header("x-amz-meta-sha256");
}
