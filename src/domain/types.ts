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
  /** The email of the person the key was issued to (`create-key --email`); null when not given. */
  ownerEmail: string | null;
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
  /** The owner email of the API key that created the job (Baseten's `user`); null when unknown. */
  createdByEmail: string | null;
}

/** Fields POST /v1/training_jobs/search can order by: Baseten's schema says "currently supports created_at". */
export const JOB_SEARCH_ORDER_FIELDS = ["created_at"] as const;
export type JobSearchOrderField = (typeof JOB_SEARCH_ORDER_FIELDS)[number];

/** A search of one organisation's live jobs; null filters match everything. */
export interface JobSearch {
  projectId: string | null;
  jobId: string | null;
  /** Any of these; null (or empty) is every status. */
  statuses: JobStatus[] | null;
  orderBy: { field: JobSearchOrderField; order: "asc" | "desc" };
  /** At most this many jobs, the first ones in that order. */
  limit: number;
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
  /**
   * The blob key of this version's bytes (domain/names.ts versionedBlobKey); null for a file
   * committed before versioned keys, whose bytes are at its legacy key (blobKeyOf).
   */
  blobKey: string | null;
}

/** What the row switch of a commit did: the file as committed and the version it replaced, if any. */
export interface CommittedFile {
  file: FileRecord;
  /** The previous version (its blob key says which bytes the caller may now delete); null for a new name. */
  replaced: FileRecord | null;
}

/** A blob key the garbage collector found, as parsed back into the file it would belong to. */
export interface BlobKeyRef {
  key: string;
  jobId: string;
  nodeRank: number;
  relativeName: string;
  /** A legacy key is referenced by a row of that name whose blob key is null; a versioned one by its own key. */
  legacy: boolean;
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

/**
 * One state-changing action, as the audit log keeps it: who (the API key, or the local admin CLI),
 * when, what and on what. Never a secret: subjects and details are ids and names only.
 */
export interface AuditEntry {
  /** Increasing with time of recording. */
  id: number;
  at: string;
  /** e.g. `api_key.created`, `project.deleted` (see AUDIT_ACTIONS; other features add theirs). */
  action: string;
  /** The API key that did it; null for the local admin CLI. */
  keyId: string | null;
  /** Who, for people: `key <id>` or `admin CLI (<user>@<host>)`. */
  actor: string;
  /** The organisation the action concerned, when there is one. */
  orgId: string | null;
  /** The id of what was acted on (a key, project, job, file ...). */
  subject: string | null;
  details: Record<string, string | number | boolean | null>;
}

export type NewAuditEntry = Omit<AuditEntry, "id" | "at">;
