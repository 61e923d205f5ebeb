import type {
  ApiKeyRecord,
  AuditEntry,
  NewAuditEntry,
  CheckpointSummary,
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
   * Makes a file visible. A new (rank, name) takes position fileCount and fileCount grows by
   * one; a replaced file keeps its position. Positions therefore stay dense (0..n-1), so a page
   * at any offset is an index seek and a client paging while uploads continue sees each file
   * that existed when it started exactly once.
   */
  commitFile(file: {
    jobId: string;
    nodeRank: number;
    relativeName: string;
    sizeBytes: number;
    sha256: string | null;
    maxFilesPerJob?: number;
    /** What the file's bytes say (file-facts.ts), stored with it in the same transaction; a replacement's old facts go. */
    facts?: StoredFacts | null;
  }): Promise<FileRecord | "job-gone" | "too-many-files">;
  listFiles(jobId: string, offset: number, limit: number): Promise<FileRecord[]>;
  getFile(jobId: string, nodeRank: number, relativeName: string): Promise<FileRecord | null>;
  /**
   * A file of the same rank that `relativeName` cannot coexist with on a filesystem: one named
   * like a folder of it (`a` for `a/b`) or one inside it (`a/b` for `a`). Null when there is none.
   * Checked on every backend, so a job stays downloadable to disk even when S3 would accept both.
   */
  findPathConflict(jobId: string, nodeRank: number, relativeName: string): Promise<string | null>;
  summarizeCheckpoints(jobId: string): Promise<CheckpointSummary[]>;

  // File facts (rows go with their file: replaced on commit, removed when the file is)
  /** Facts of the job's files of these formats, without their detail: for the checkpoints listing. */
  listFileFacts(jobId: string, formats: readonly string[]): Promise<(FileFactsRecord & { checkpointId: string })[]>;
  /** Every file of one checkpoint (a top-level folder; "." the root files), by rank then name, with its facts. */
  listCheckpointFilesWithFacts(jobId: string, checkpointId: string): Promise<{ file: FileRecord; facts: FileFactsRecord | null }[]>;
  /** The large part of a file's facts (tensors, a weight map), JSON; null when it has none. */
  factsDetail(jobId: string, nodeRank: number, relativeName: string): Promise<string | null>;

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
