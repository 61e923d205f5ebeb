/** Domain records, named after the API objects they become (not after tables). */
import type { CheckpointState, CompletionReason, TrainerStateSummary } from "./checkpoints.js";

export const JOB_STATUSES = [
  "TRAINING_JOB_CREATED",
  "TRAINING_JOB_DEPLOYING",
  "TRAINING_JOB_RUNNING",
  "TRAINING_JOB_COMPLETED",
  "TRAINING_JOB_FAILED",
  "TRAINING_JOB_STOPPED",
] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  "TRAINING_JOB_COMPLETED",
  "TRAINING_JOB_FAILED",
  "TRAINING_JOB_STOPPED",
]);

export const SYNC_STATUSES = ["SYNCING", "COMPLETED"] as const;
export type SyncStatus = (typeof SYNC_STATUSES)[number];

export interface Organisation {
  id: string;
  name: string;
  createdAt: string;
}

export interface ApiKeyRecord {
  keyId: string;
  orgId: string;
  orgName: string;
  secretHash: Buffer;
  createdAt: string;
  revokedAt: string | null;
}

export interface ProjectRecord {
  id: string;
  orgId: string;
  name: string;
  createdAt: string;
  updatedAt: string;
}

export interface JobRecord {
  id: string;
  projectId: string;
  orgId: string;
  name: string | null;
  status: JobStatus;
  errorMessage: string | null;
  checkpointSyncStatus: SyncStatus | null;
  priority: number;
  /** The creation body as sent (Baseten's image/compute/runtime...), kept verbatim. */
  spec: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
  /** Number of files; also the next file's position, since positions are dense (see commitFile). */
  fileCount: number;
}

export interface FileRecord {
  jobId: string;
  /** Position in the job's listing: 0..fileCount-1, assigned at first commit, kept on replace. */
  seq: number;
  nodeRank: number;
  relativeName: string;
  sizeBytes: number;
  sha256: string | null;
  lastModified: string;
  createdAt: string;
}

export interface CheckpointSummary {
  checkpointId: string;
  sizeBytes: number;
  fileCount: number;
  createdAt: string;
  lastModified: string;
  hasAdapterConfig: boolean;
  /** Kept per checkpoint at commit time, so no listing or state decision scans a job's files. */
  state: CheckpointState;
  completedAt: string | null;
  completedBy: CompletionReason | null;
  pinned: boolean;
  /** From its trainer_state.json, when it has one. */
  trainerState: TrainerStateSummary | null;
  /** Shards a safetensors index names that are not yet present at their declared size. */
  requirementsPending: number;
  hasIndex: boolean;
}

/** A project-scoped name for one (job, checkpoint). */
export interface AliasRecord {
  projectId: string;
  name: string;
  jobId: string;
  checkpointId: string;
  updatedAt: string;
}

/** One move of an alias; jobId and checkpointId are null when it was removed. */
export interface AliasHistoryEntry {
  name: string;
  version: number;
  jobId: string | null;
  checkpointId: string | null;
  changedAt: string;
}

/** A checkpoint whose delete began (its files are unlisted) and whose blobs may remain. */
export interface CheckpointDeletion {
  projectId: string;
  jobId: string;
  checkpointId: string;
  nodeRanks: number[];
}

/** A direct upload in progress: the client PUTs bytes to presigned URLs, then asks to complete. */
export interface UploadRecord {
  uploadId: string;
  orgId: string;
  projectId: string;
  jobId: string;
  nodeRank: number;
  relativeName: string;
  sizeBytes: number;
  sha256: string | null;
  partSizeBytes: number;
  partCount: number;
  /** The blob store's own id for it (an S3 multipart upload id), if it has one. */
  backendUploadId: string | null;
  createdAt: string;
  expiresAt: string;
}
