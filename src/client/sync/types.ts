import type { CkptClient } from "../api.js";
import type { RetryPolicy } from "../download/types.js";

/** One version of a local file: what the scan sees. (size, mtime) is how a change is noticed. */
export interface FileVersion {
  size: number;
  mtimeMs: number;
}

/** A regular file under the synced folder, as one scan saw it. */
export interface LocalFile extends FileVersion {
  /** Path relative to the synced folder, '/'-separated: the file's relative_file_name. */
  name: string;
  /** Absolute path on disk. */
  path: string;
}

/** A version that is on the server, with the digest the server verified. */
export interface SyncedVersion extends FileVersion {
  sha256: string;
}

/** Knobs of the sync engine; every duration is in milliseconds. */
export interface SyncTuning {
  /** A file is complete once its size and mtime have not changed for this long. */
  settleMs: number;
  /** How often the folder is scanned. */
  scanIntervalMs: number;
  /** Files uploaded at once. */
  concurrency: number;
  /** Cap on the upload rate of all files together, in bytes per second; unlimited when absent. */
  maxBytesPerSecond?: number;
}

export const DEFAULT_SYNC_TUNING: SyncTuning = { settleMs: 2_000, scanIntervalMs: 1_000, concurrency: 4 };

export interface CheckpointSyncOptions extends Partial<SyncTuning> {
  client: CkptClient;
  /** Training project id. */
  projectId: string;
  /** Training job id. */
  jobId: string;
  /** The node rank these files are uploaded as. */
  nodeRank: number;
  /** The folder the training writes checkpoints into. */
  dir: string;
  /** Report checkpoint_sync_status (SYNCING / COMPLETED) on the job; only one process per job should. */
  reportSyncStatus?: boolean;
  /** Tries per upload before it is given up for now; missing fields take DEFAULT_RETRY_POLICY's. */
  retry?: Partial<RetryPolicy>;
  /** Called with every event; must not throw. */
  onEvent?: (event: SyncEvent) => void;
  /** Aborting stops at once, uploads in flight included; the journal keeps what was done. */
  signal?: AbortSignal;
}

export type SyncEvent =
  /** Files an earlier run uploaded (recorded in the journal, unchanged, listed by the server). */
  | { type: "resumed"; files: number }
  | { type: "uploaded"; name: string; size: number }
  /** The file changed while it was read or sent; it is uploaded again once it settles. */
  | { type: "changed-during-upload"; name: string }
  | { type: "upload-failed"; name: string; message: string; willRetry: boolean }
  /** Something not about one file (a scan, a status report) went wrong; syncing goes on. */
  | { type: "warning"; message: string };

export interface SyncFailure {
  name: string;
  message: string;
}

/** What a drain achieved. */
export interface SyncSummary {
  /** Files uploaded by this engine since it was opened. */
  uploaded: number;
  bytesUploaded: number;
  /** Files found already synced when the engine was opened. */
  resumed: number;
  /** Files whose current version is not on the server. */
  failed: SyncFailure[];
}
