import type { CompletionReason, StateChange, TrainerStateSummary } from "../../domain/checkpoints.js";
import type { RetentionPolicy } from "../../domain/retention.js";
import type {
  AliasHistoryEntry,
  AliasRecord,
  ApiKeyRecord,
  AuditEntry,
  NewAuditEntry,
  CheckpointDeletion,
  CheckpointSummary,
  BlobKeyRef,
  CommittedFile,
  FileRecord,
  JobRecord,
  JobSearch,
  JobStatus,
  Organisation,
  ProjectRecord,
  SyncStatus,
  UploadRecord,
} from "../../domain/types.js";
import type { LogLineRecord, LogQuery, NewLogLine } from "../../domain/logs.js";
import type { FileFactsRecord, StoredFacts } from "../../domain/file-facts.js";

/**
 * Everything ckpt remembers besides the bytes. Each backend (SQLite, PostgreSQL) implements this
 * and passes the same test suite. Lookups of projects and jobs always take the organisation, so
 * that a tenant can never reach another's rows by id: scoping is the store's job, not the route's.
 */
export interface MetadataStore {
  readonly kind: string;
  close(): Promise<void>;

  // Organisations and keys
  ensureOrganisation(name: string): Promise<Organisation>;
  insertApiKey(key: { keyId: string; orgId: string; secretHash: Buffer; ownerEmail?: string | null }): Promise<void>;
  findApiKey(keyId: string): Promise<ApiKeyRecord | null>;
  listApiKeys(): Promise<ApiKeyRecord[]>;
  /** True when a live key was revoked. */
  revokeApiKey(keyId: string): Promise<boolean>;

  // Projects
  upsertProject(orgId: string, name: string): Promise<ProjectRecord>;
  listProjects(orgId: string): Promise<ProjectRecord[]>;
  getProject(orgId: string, projectId: string): Promise<ProjectRecord | null>;
  /** Unscoped, for admin commands that are given a project id and no organisation. */
  getProjectById(projectId: string): Promise<ProjectRecord | null>;
  /** Marks the project and all its jobs as deleting; the caller then removes blobs and purges. */
  markProjectDeleted(orgId: string, projectId: string): Promise<{ jobIds: string[] } | null>;

  // Jobs
  createJob(job: {
    id: string;
    orgId: string;
    projectId: string;
    name: string | null;
    spec: Record<string, unknown>;
    priority: number;
    createdByEmail?: string | null;
  }): Promise<JobRecord>;
  listJobs(orgId: string, projectId: string): Promise<JobRecord[]>;
  latestJob(orgId: string, projectId: string): Promise<JobRecord | null>;
  latestJobs(orgId: string, projectIds: string[]): Promise<Map<string, JobRecord>>;
  getJob(orgId: string, projectId: string, jobId: string): Promise<JobRecord | null>;
  /**
   * The organisation's live jobs matching every filter, each with its project (one query), in
   * the given order (ties in creation order), at most `limit`. An index answers each filter, so
   * the cost follows the matching jobs, not how many jobs the database holds.
   */
  searchJobs(orgId: string, search: JobSearch): Promise<{ job: JobRecord; project: ProjectRecord }[]>;
  /** The database's query plan for searchJobs (EXPLAIN), so tests and operators can see the index it uses. */
  explainSearchJobs(orgId: string, search: JobSearch): Promise<string>;
  /** Unscoped, for work that follows a commit (which knows only the job id); null when deleted. */
  getJobById(jobId: string): Promise<JobRecord | null>;
  /** The organisation of a live project (for work the server starts itself, e.g. automatic retention). */
  orgOfProject(projectId: string): Promise<string | null>;
  updateJob(
    orgId: string,
    projectId: string,
    jobId: string,
    change: { status?: JobStatus; errorMessage?: string | null; syncStatus?: SyncStatus | null; priority?: number },
  ): Promise<JobRecord | null>;
  /** Hides the job at once (it answers 404 from then on); purgeJob later removes its rows. */
  markJobDeleted(orgId: string, projectId: string, jobId: string): Promise<boolean>;
  /** Jobs marked deleted whose purge has not finished (e.g. the server died mid-delete). */
  jobsPendingPurge(): Promise<{ projectId: string; jobId: string }[]>;
  purgeJob(jobId: string): Promise<void>;
  purgeDeletedProjects(): Promise<void>;

  // Files
  /**
   * Makes a file visible: the row switch that IS the commit of a version. A new (rank, name)
   * takes position fileCount and fileCount grows by one; a replaced file keeps its position.
   * Positions therefore stay dense (0..n-1), so a page at any offset is an index seek and a client
   * paging while uploads continue sees each file that existed when it started exactly once.
   * Commits to one job are serialised (a row lock / an immediate transaction), so of two servers
   * replacing one name, each gets back the version its switch replaced: the caller deletes that
   * version's bytes, and every version is unreferenced by exactly one commit. The file/folder
   * rule (findPathConflict) is decided here too, inside the same serialisation ("path-conflict").
   * `blobKey` is the version's key (null: the legacy key, for tests of rows from before); its
   * blob write (beginBlobWrite) ends in the same transaction.
   */
  commitFile(file: {
    jobId: string;
    nodeRank: number;
    relativeName: string;
    sizeBytes: number;
    sha256: string | null;
    blobKey?: string | null;
    maxFilesPerJob?: number;
    /** What the file's bytes say (file-facts.ts), stored with it in the same transaction; a replacement's old facts go. */
    facts?: StoredFacts | null;
  }): Promise<CommittedFile | "job-gone" | "too-many-files" | "checkpoint-deleting" | "path-conflict">;
  /**
   * Records that bytes are being written at a new versioned key of the job, before the first byte
   * goes: garbage collection never takes such a key for an orphan. commitFile ends it; a failed
   * upload calls endBlobWrite (a crash leaves it, and gc treats it as dead once it is old).
   */
  beginBlobWrite(blobKey: string, jobId: string): Promise<void>;
  endBlobWrite(blobKey: string): Promise<void>;
  /**
   * Of these keys, those a file row references (a legacy key: the row of its name with a null
   * blob key; a versioned one: the row holding it) or a blob write begun at or after
   * `writesSince` (ISO 8601) is using. One round trip per batch: what gc asks per page of keys.
   */
  referencedBlobKeys(refs: readonly BlobKeyRef[], writesSince: string): Promise<Set<string>>;
  listFiles(jobId: string, offset: number, limit: number): Promise<FileRecord[]>;
  getFile(jobId: string, nodeRank: number, relativeName: string): Promise<FileRecord | null>;
  /**
   * A file of the same rank that `relativeName` cannot coexist with on a filesystem: one named
   * like a folder of it (`a` for `a/b`) or one inside it (`a/b` for `a`). Null when there is none.
   * Checked on every backend, so a job stays downloadable to disk even when S3 would accept both.
   */
  findPathConflict(jobId: string, nodeRank: number, relativeName: string): Promise<string | null>;
  /**
   * The job's checkpoints in the order their first files were committed, from the aggregates
   * commitFile keeps (never a scan of the job's files). commitFile also applies the state rule
   * of domain/checkpoints.ts (stateAfterCommit) in the same transaction. Root files belong to no
   * checkpoint (domain/checkpoint-id.ts).
   */
  summarizeCheckpoints(jobId: string): Promise<CheckpointSummary[]>;

  // File facts (rows go with their file: replaced on commit, removed when the file is)
  /** Facts of the job's files of these formats, without their detail: for the checkpoints listing. */
  listFileFacts(jobId: string, formats: readonly string[]): Promise<(FileFactsRecord & { checkpointId: string | null })[]>;
  /** Every file of one checkpoint (a top-level folder), by rank then name, with its facts. */
  listCheckpointFilesWithFacts(jobId: string, checkpointId: string): Promise<{ file: FileRecord; facts: FileFactsRecord | null }[]>;
  /** The large part of a file's facts (tensors, a weight map), JSON; null when it has none. */
  factsDetail(jobId: string, nodeRank: number, relativeName: string): Promise<string | null>;

  // Checkpoints (rows keyed by job and checkpoint id; callers have checked tenancy on the job)
  getCheckpoint(jobId: string, checkpointId: string): Promise<CheckpointSummary | null>;
  /** Makes it COMPLETE (a no-op if it is); null when there is no such live checkpoint. */
  completeCheckpoint(jobId: string, checkpointId: string, reason: CompletionReason): Promise<CheckpointSummary | null>;
  /** Applies `change` to the job's WRITING checkpoints except those named; returns the ids changed. */
  settleCheckpoints(jobId: string, change: StateChange, except: readonly string[]): Promise<string[]>;
  setPinned(jobId: string, checkpointId: string, pinned: boolean): Promise<CheckpointSummary | null>;
  setTrainerState(jobId: string, checkpointId: string, summary: TrainerStateSummary): Promise<void>;
  /**
   * Replaces the shards a safetensors index of `nodeRank` requires, all unmet; returns those
   * already committed (the caller checks their sizes and calls meetRequirement).
   */
  setRequirements(jobId: string, checkpointId: string, nodeRank: number, relativeNames: readonly string[]): Promise<{ relativeName: string; sizeBytes: number }[]>;
  /**
   * Marks a required shard met if it is still committed at `sizeBytes`; when that leaves none
   * pending, the checkpoint becomes COMPLETE ('safetensors-index'). Returns the checkpoint after.
   */
  meetRequirement(jobId: string, nodeRank: number, relativeName: string, sizeBytes: number): Promise<CheckpointSummary | null>;
  /** Names of the job's direct uploads still open (their checkpoints are not complete yet). */
  openUploadNames(jobId: string): Promise<string[]>;
  /**
   * Starts deleting a checkpoint, once: in one transaction it is marked deleting and its files
   * are unlisted, provided it is not WRITING, pinned or aliased. Null when it is not (or another
   * server already began). The caller then removes its blobs and calls finishCheckpointDelete.
   */
  beginCheckpointDelete(jobId: string, checkpointId: string): Promise<{ nodeRanks: number[] } | null>;
  finishCheckpointDelete(jobId: string, checkpointId: string): Promise<void>;
  /** Deletes begun and not finished (e.g. the server died mid-apply). */
  checkpointDeletesPending(): Promise<CheckpointDeletion[]>;

  // Aliases and retention (project-scoped; callers have checked tenancy on the project)
  /** Points the alias at a live checkpoint and records the move; "checkpoint-gone" if there is none. */
  setAlias(projectId: string, name: string, jobId: string, checkpointId: string): Promise<AliasRecord | "checkpoint-gone">;
  /** True when it existed; the removal is recorded in its history. */
  removeAlias(projectId: string, name: string): Promise<boolean>;
  listAliases(projectId: string): Promise<AliasRecord[]>;
  getAlias(projectId: string, name: string): Promise<AliasRecord | null>;
  aliasHistory(projectId: string, name: string): Promise<AliasHistoryEntry[]>;
  getRetentionPolicy(projectId: string): Promise<RetentionPolicy | null>;
  putRetentionPolicy(projectId: string, policy: RetentionPolicy): Promise<void>;

  // Direct uploads (kept in the database so any server can complete what another began)
  createUpload(upload: Omit<UploadRecord, "createdAt">): Promise<UploadRecord>;
  /** Scoped like jobs: another organisation's upload is not found. */
  getUpload(orgId: string, jobId: string, uploadId: string): Promise<UploadRecord | null>;
  /** Unscoped, for the blob route that receives parts (authorised by its URL signature). */
  getUploadById(uploadId: string): Promise<UploadRecord | null>;
  /** True when this call removed it (so exactly one of two racing completions proceeds). */
  deleteUpload(uploadId: string): Promise<boolean>;
  listExpiredUploads(nowIso: string): Promise<UploadRecord[]>;

  // Training logs (what `ckpt run` tees from the command's stdout/stderr)
  /**
   * Appends lines in order, then drops the job's oldest lines beyond `maxLinesPerJob`.
   * "job-gone" when the job does not exist or is being deleted (nothing is stored then).
   */
  appendLogLines(jobId: string, lines: NewLogLine[], maxLinesPerJob: number): Promise<{ stored: number } | "job-gone">;
  /** Lines with fromNs <= timestamp < untilNs, ordered by (timestamp, arrival), at most `limit`. */
  queryLogLines(query: LogQuery): Promise<LogLineRecord[]>;

  // Operations: readiness, pool occupancy, the audit log
  /** One trivial round trip (readiness probes); rejects when the store cannot answer. */
  ping(): Promise<void>;
  /** Connections of a pooled backend (PostgreSQL) in use and waited for; null when not pooled. */
  poolStats(): { total: number; idle: number; waiting: number } | null;
  /** Appends to the audit log; the store assigns the id and the time. */
  appendAudit(entry: NewAuditEntry): Promise<AuditEntry>;
  /** Oldest first; `since` is an ISO 8601 time (entries at or after it). */
  listAudit(query: { since?: string; limit?: number }): Promise<AuditEntry[]>;
}
