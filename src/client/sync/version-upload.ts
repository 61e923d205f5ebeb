import { stat } from "node:fs/promises";
import type { CkptClient } from "../api.js";
import { isRetryableStatus } from "../download/retry.js";
import type { RetryPolicy } from "../download/types.js";
import { CkptApiError } from "../errors.js";
import { sha256OfFile } from "../upload/digest.js";
import { uploadFile, type UploadRoute } from "../upload/upload-file.js";
import type { FileVersion, LocalFile, SyncedVersion } from "./types.js";

export type UploadOutcome =
  | { kind: "uploaded"; version: SyncedVersion }
  /** The file changed while it was hashed or sent: whatever reached the server was refused. */
  | { kind: "changed" }
  | { kind: "vanished" }
  /** `retryable`: the server or network failed, not the file; trying later may work. */
  | { kind: "failed"; message: string; retryable: boolean };

export interface UploadTarget {
  /** The client uploads go through (possibly rate-limited). */
  client: CkptClient;
  projectId: string;
  jobId: string;
  nodeRank: number;
  /** Direct to the blob store or through the API server; shared by the engine's files. */
  route: UploadRoute;
  retry: RetryPolicy;
  signal?: AbortSignal;
}

export function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs;
}

async function currentVersion(path: string): Promise<FileVersion | null> {
  const stats = await stat(path).catch(() => null);
  return stats?.isFile() ? { size: stats.size, mtimeMs: stats.mtimeMs } : null;
}

/**
 * Uploads the version of `file` the scan saw, with its length and sha256 so that the server
 * refuses (and never lists) bytes that differ from what was hashed: direct to the blob store
 * where the server offers it, streamed through the API server otherwise. A file that changes
 * underneath is not an error: it is reported as changed and goes back to settling. Network and
 * server failures are retried with backoff by the upload engine (a direct upload from the part
 * that failed); an abort (signal) is thrown.
 */
export async function uploadFileVersion(target: UploadTarget, file: LocalFile): Promise<UploadOutcome> {
  const hashed = await hashVersion(file);
  if (hashed.kind !== "hashed") return hashed;
  const { version } = hashed;
  try {
    await uploadFile(
      target.client,
      { projectId: target.projectId, jobId: target.jobId, nodeRank: target.nodeRank, relativeName: file.name, path: file.path },
      { route: target.route, sha256: version.sha256, retry: target.retry, signal: target.signal },
    );
    return { kind: "uploaded", version };
  } catch (err) {
    if (target.signal?.aborted) throw err;
    const retryable = err instanceof CkptApiError && isRetryableStatus(err.status);
    // A refusal may be the server seeing different bytes than we hashed: only then is the digest worth a read.
    const change = await changeSince(file.path, version, !retryable);
    if (change) return change;
    return { kind: "failed", message: (err as Error).message, retryable };
  }
}

/** The file's digest, provided it is still the version the scan saw before and after hashing. */
async function hashVersion(file: LocalFile): Promise<{ kind: "hashed"; version: SyncedVersion } | UploadOutcome> {
  const before = await currentVersion(file.path);
  if (!before) return { kind: "vanished" };
  if (!sameVersion(before, file)) return { kind: "changed" };
  let sha256: string;
  try {
    sha256 = await sha256OfFile(file.path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { kind: "vanished" };
    return { kind: "failed", message: `cannot read ${file.name}: ${(err as Error).message}`, retryable: false };
  }
  const after = await currentVersion(file.path);
  if (!after) return { kind: "vanished" };
  if (!sameVersion(after, before)) return { kind: "changed" };
  return { kind: "hashed", version: { ...before, sha256 } };
}

/**
 * Why an upload of `version` failed, if the file is to blame: it is gone, or it changed. Size and
 * mtime catch nearly every change; the digest is the last word, for a rewrite of the same size
 * within one mtime tick (which the server refuses as a digest mismatch).
 */
async function changeSince(path: string, version: SyncedVersion, checkDigest: boolean): Promise<UploadOutcome | null> {
  const now = await currentVersion(path);
  if (!now) return { kind: "vanished" };
  if (!sameVersion(now, version)) return { kind: "changed" };
  if (!checkDigest) return null;
  const digest = await sha256OfFile(path).catch(() => null);
  if (digest === null) return { kind: "vanished" };
  return digest === version.sha256 ? null : { kind: "changed" };
}
