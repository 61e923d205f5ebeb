import Database from "better-sqlite3";
import { newId } from "../../domain/ids.js";
import { checkpointIdOf, nameInCheckpoint } from "../../domain/checkpoint-id.js";
import { isCompletionMarker } from "../../domain/checkpoint-markers.js";
import { stateAfterCommit, type CheckpointState, type CompletionReason, type StateChange, type TrainerStateSummary } from "../../domain/checkpoints.js";
import type { RetentionPolicy } from "../../domain/retention.js";
import type {
  AliasHistoryEntry,
  AliasRecord,
  ApiKeyRecord,
  AuditEntry,
  NewAuditEntry,
  CheckpointDeletion,
  CheckpointSummary,
  FileRecord,
  BlobKeyRef,
  CommittedFile,
  JobRecord,
  JobSearch,
  JobStatus,
  Organisation,
  ProjectRecord,
  SyncStatus,
  UploadRecord,
} from "../../domain/types.js";
import type { MetadataStore } from "./store.js";
import { SQLITE_MIGRATIONS } from "./sqlite-migrations.js";
import type { LogLevel, LogLineRecord, LogQuery, LogStream, NewLogLine } from "../../domain/logs.js";
import { ancestorsOf } from "../../domain/names.js";
import type { FileFactsRecord, FileFormat, StoredFacts } from "../../domain/file-facts.js";

const FACTS = `node_rank AS nodeRank, relative_name AS relativeName, format, error, parameter_count AS parameterCount,
  tensor_count AS tensorCount, summary`;

const nowIso = () => new Date().toISOString();

const UPLOAD = `upload_id AS uploadId, org_id AS orgId, project_id AS projectId, job_id AS jobId, node_rank AS nodeRank,
  relative_name AS relativeName, size_bytes AS sizeBytes, sha256, part_size_bytes AS partSizeBytes,
  part_count AS partCount, backend_upload_id AS backendUploadId, created_at AS createdAt, expires_at AS expiresAt`;

interface JobRow {
  id: string;
  project_id: string;
  org_id: string;
  name: string | null;
  status: string;
  error_message: string | null;
  sync_status: string | null;
  priority: number;
  spec: string;
  created_at: string;
  updated_at: string;
  file_count: number;
  created_by_email: string | null;
  next_seq: number;
}

interface CheckpointRow {
  job_id: string;
  checkpoint_id: string;
  size_bytes: number;
  file_count: number;
  first_seq: number;
  created_at: string;
  last_modified: string;
  has_adapter_config: number;
  state: string;
  completed_at: string | null;
  completed_by: string | null;
  pinned: number;
  trainer_state: string | null;
  has_index: number;
  requirements_pending: number;
  deleting_at: string | null;
}

const checkpointFromRow = (r: CheckpointRow): CheckpointSummary => ({
  checkpointId: r.checkpoint_id,
  sizeBytes: r.size_bytes,
  fileCount: r.file_count,
  createdAt: r.created_at,
  lastModified: r.last_modified,
  hasAdapterConfig: r.has_adapter_config === 1,
  state: r.state as CheckpointState,
  completedAt: r.completed_at,
  completedBy: r.completed_by as CompletionReason | null,
  pinned: r.pinned === 1,
  trainerState: r.trainer_state === null ? null : (JSON.parse(r.trainer_state) as TrainerStateSummary),
  requirementsPending: r.requirements_pending,
  hasIndex: r.has_index === 1,
});

const isAdapterConfig = (relativeName: string) => {
  const inside = nameInCheckpoint(relativeName);
  return inside !== null && (inside === "adapter_config.json" || inside.endsWith("/adapter_config.json"));
};

interface FileRow {
  job_id: string;
  seq: number;
  node_rank: number;
  relative_name: string;
  size_bytes: number;
  sha256: string | null;
  last_modified: string;
  created_at: string;
  blob_key: string | null;
}

const jobFromRow = (r: JobRow): JobRecord => ({
  id: r.id,
  projectId: r.project_id,
  orgId: r.org_id,
  name: r.name,
  status: r.status as JobStatus,
  errorMessage: r.error_message,
  checkpointSyncStatus: r.sync_status as SyncStatus | null,
  priority: r.priority,
  spec: JSON.parse(r.spec) as Record<string, unknown>,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  fileCount: r.file_count,
  createdByEmail: r.created_by_email,
});

const fileFromRow = (r: FileRow): FileRecord => ({
  jobId: r.job_id,
  seq: r.seq,
  nodeRank: r.node_rank,
  relativeName: r.relative_name,
  sizeBytes: r.size_bytes,
  sha256: r.sha256,
  lastModified: r.last_modified,
  createdAt: r.created_at,
  blobKey: r.blob_key,
});

interface AliasRow {
  project_id: string;
  name: string;
  job_id: string;
  checkpoint_id: string;
  updated_at: string;
}

const aliasFromRow = (r: AliasRow): AliasRecord => ({
  projectId: r.project_id,
  name: r.name,
  jobId: r.job_id,
  checkpointId: r.checkpoint_id,
  updatedAt: r.updated_at,
});

const projectFromRow = (r: { id: string; org_id: string; name: string; created_at: string; updated_at: string }): ProjectRecord => ({
  id: r.id,
  orgId: r.org_id,
  name: r.name,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/**
 * The embedded default. better-sqlite3 is synchronous, which is what we want here: each call is
 * microseconds (index seeks on one file), so doing it on the event loop beats a thread hop, and
 * SQLite's single writer makes every commit trivially serialisable.
 */
export class SqliteMetadataStore implements MetadataStore {
  readonly kind = "sqlite";
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    // NORMAL in WAL mode is durable across process crashes (kill -9); only an OS crash can lose
    // the last transactions, and blobs are fsynced before their row is committed anyway.
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    this.migrate();
    const db = this.db;
    const live = "deleted_at IS NULL";
    this.stmts = {
      orgByName: db.prepare("SELECT id, name, created_at FROM organisations WHERE name = ?"),
      insertOrg: db.prepare("INSERT INTO organisations (id, name, created_at) VALUES (?, ?, ?)"),
      insertKey: db.prepare("INSERT INTO api_keys (key_id, org_id, secret_hash, created_at, owner_email) VALUES (?, ?, ?, ?, ?)"),
      keyById: db.prepare(
        `SELECT k.key_id, k.org_id, o.name AS org_name, k.secret_hash, k.created_at, k.revoked_at, k.owner_email
         FROM api_keys k JOIN organisations o ON o.id = k.org_id WHERE k.key_id = ?`,
      ),
      listKeys: db.prepare(
        `SELECT k.key_id, k.org_id, o.name AS org_name, k.secret_hash, k.created_at, k.revoked_at, k.owner_email
         FROM api_keys k JOIN organisations o ON o.id = k.org_id ORDER BY k.created_at, k.key_id`,
      ),
      revokeKey: db.prepare("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"),
      projectByName: db.prepare(`SELECT * FROM projects WHERE org_id = ? AND name = ? AND ${live}`),
      projectById: db.prepare(`SELECT * FROM projects WHERE org_id = ? AND id = ? AND ${live}`),
      projectByIdAnyOrg: db.prepare(`SELECT * FROM projects WHERE id = ? AND ${live}`),
      insertProject: db.prepare(
        "INSERT INTO projects (id, org_id, name, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
      ),
      touchProject: db.prepare("UPDATE projects SET updated_at = ? WHERE id = ?"),
      listProjects: db.prepare(`SELECT * FROM projects WHERE org_id = ? AND ${live} ORDER BY created_at, id`),
      markProjectDeleted: db.prepare(`UPDATE projects SET deleted_at = ? WHERE org_id = ? AND id = ? AND ${live}`),
      markProjectJobsDeleted: db.prepare(`UPDATE jobs SET deleted_at = ? WHERE project_id = ? AND ${live}`),
      jobIdsOfProject: db.prepare("SELECT id FROM jobs WHERE project_id = ?"),
      insertJob: db.prepare(
        `INSERT INTO jobs (id, project_id, org_id, name, status, priority, spec, created_at, updated_at, file_count, created_by_email)
         VALUES (?, ?, ?, ?, 'TRAINING_JOB_CREATED', ?, ?, ?, ?, 0, ?)`,
      ),
      jobById: db.prepare(`SELECT * FROM jobs WHERE org_id = ? AND project_id = ? AND id = ? AND ${live}`),
      liveJobById: db.prepare(`SELECT * FROM jobs WHERE id = ? AND ${live}`),
      listJobs: db.prepare(
        `SELECT * FROM jobs WHERE org_id = ? AND project_id = ? AND ${live} ORDER BY created_at DESC, rowid DESC`,
      ),
      latestJob: db.prepare(
        `SELECT * FROM jobs WHERE org_id = ? AND project_id = ? AND ${live} ORDER BY created_at DESC, rowid DESC LIMIT 1`,
      ),
      markJobDeleted: db.prepare(`UPDATE jobs SET deleted_at = ? WHERE org_id = ? AND project_id = ? AND id = ? AND ${live}`),
      pendingPurge: db.prepare("SELECT project_id, id FROM jobs WHERE deleted_at IS NOT NULL"),
      deletedJobById: db.prepare("SELECT 1 FROM jobs WHERE id = ? AND deleted_at IS NOT NULL"),
      purgeFiles: db.prepare("DELETE FROM checkpoint_files WHERE job_id = ?"),
      purgeCheckpointTables: [
        db.prepare("DELETE FROM checkpoints WHERE job_id = ?"),
        db.prepare("DELETE FROM checkpoint_ranks WHERE job_id = ?"),
        db.prepare("DELETE FROM checkpoint_requirements WHERE job_id = ?"),
        db.prepare("DELETE FROM checkpoint_aliases WHERE job_id = ?"),
      ],
      purgeJob: db.prepare("DELETE FROM jobs WHERE id = ? AND deleted_at IS NOT NULL"),
      purgeProjectExtras: ["retention_policies", "checkpoint_aliases", "checkpoint_alias_history"].map((table) =>
        db.prepare(
          `DELETE FROM ${table} WHERE project_id IN (SELECT id FROM projects WHERE deleted_at IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.project_id = projects.id))`,
        ),
      ),
      purgeProjects: db.prepare(
        "DELETE FROM projects WHERE deleted_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.project_id = projects.id)",
      ),
      fileByName: db.prepare("SELECT * FROM checkpoint_files WHERE job_id = ? AND node_rank = ? AND relative_name = ?"),
      replaceFile: db.prepare(
        `UPDATE checkpoint_files SET size_bytes = ?, sha256 = ?, last_modified = ?, blob_key = ?
         WHERE job_id = ? AND node_rank = ? AND relative_name = ?`,
      ),
      insertFile: db.prepare(
        `INSERT INTO checkpoint_files (job_id, seq, node_rank, relative_name, size_bytes, sha256, last_modified, created_at, blob_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      beginBlobWrite: db.prepare("INSERT OR REPLACE INTO blob_writes (blob_key, job_id, started_at) VALUES (?, ?, ?)"),
      endBlobWrite: db.prepare("DELETE FROM blob_writes WHERE blob_key = ?"),
      purgeBlobWrites: db.prepare("DELETE FROM blob_writes WHERE job_id = ?"),
      fileByBlobKey: db.prepare("SELECT 1 FROM checkpoint_files WHERE blob_key = ?"),
      legacyFileByName: db.prepare("SELECT 1 FROM checkpoint_files WHERE job_id = ? AND node_rank = ? AND relative_name = ? AND blob_key IS NULL"),
      liveBlobWrite: db.prepare("SELECT 1 FROM blob_writes WHERE blob_key = ? AND started_at >= ?"),
      bumpFileCount: db.prepare("UPDATE jobs SET file_count = file_count + 1, next_seq = next_seq + 1, updated_at = ? WHERE id = ?"),
      checkpointRow: db.prepare("SELECT * FROM checkpoints WHERE job_id = ? AND checkpoint_id = ?"),
      insertCheckpoint: db.prepare(
        `INSERT INTO checkpoints (job_id, checkpoint_id, size_bytes, file_count, first_seq, created_at, last_modified, has_adapter_config)
         VALUES (?, ?, ?, 1, ?, ?, ?, ?)`,
      ),
      growCheckpoint: db.prepare(
        `UPDATE checkpoints SET size_bytes = size_bytes + ?, file_count = file_count + ?, last_modified = ?,
                has_adapter_config = MAX(has_adapter_config, ?) WHERE job_id = ? AND checkpoint_id = ?`,
      ),
      setCheckpointState: db.prepare(
        "UPDATE checkpoints SET state = ?, completed_at = ?, completed_by = ? WHERE job_id = ? AND checkpoint_id = ?",
      ),
      addRank: db.prepare("INSERT OR IGNORE INTO checkpoint_ranks (job_id, checkpoint_id, node_rank) VALUES (?, ?, ?)"),
      ranksOf: db.prepare("SELECT node_rank FROM checkpoint_ranks WHERE job_id = ? AND checkpoint_id = ? ORDER BY node_rank"),
      unmeetRequirement: db.prepare(
        "UPDATE checkpoint_requirements SET met = 0 WHERE job_id = ? AND node_rank = ? AND relative_name = ? AND met = 1",
      ),
      bumpPending: db.prepare("UPDATE checkpoints SET requirements_pending = requirements_pending + ? WHERE job_id = ? AND checkpoint_id = ?"),
      liveCheckpoints: db.prepare("SELECT * FROM checkpoints WHERE job_id = ? AND deleting_at IS NULL AND file_count > 0 ORDER BY first_seq"),
      writingCheckpoints: db.prepare("SELECT checkpoint_id FROM checkpoints WHERE job_id = ? AND state = 'WRITING' AND deleting_at IS NULL"),
      setPinned: db.prepare("UPDATE checkpoints SET pinned = ? WHERE job_id = ? AND checkpoint_id = ? AND deleting_at IS NULL"),
      setTrainerState: db.prepare("UPDATE checkpoints SET trainer_state = ? WHERE job_id = ? AND checkpoint_id = ?"),
      dropRequirements: db.prepare("DELETE FROM checkpoint_requirements WHERE job_id = ? AND checkpoint_id = ? AND node_rank = ?"),
      insertRequirement: db.prepare(
        "INSERT OR REPLACE INTO checkpoint_requirements (job_id, checkpoint_id, node_rank, relative_name, met) VALUES (?, ?, ?, ?, 0)",
      ),
      countPending: db.prepare("SELECT COUNT(*) AS n FROM checkpoint_requirements WHERE job_id = ? AND checkpoint_id = ? AND met = 0"),
      setPending: db.prepare("UPDATE checkpoints SET has_index = 1, requirements_pending = ? WHERE job_id = ? AND checkpoint_id = ?"),
      requirement: db.prepare("SELECT checkpoint_id, met FROM checkpoint_requirements WHERE job_id = ? AND node_rank = ? AND relative_name = ?"),
      meetRequirement: db.prepare("UPDATE checkpoint_requirements SET met = 1 WHERE job_id = ? AND node_rank = ? AND relative_name = ?"),
      openUploadNames: db.prepare("SELECT relative_name FROM uploads WHERE job_id = ?"),
      markCheckpointDeleting: db.prepare(
        `UPDATE checkpoints SET deleting_at = ? WHERE job_id = ? AND checkpoint_id = ? AND deleting_at IS NULL
           AND state <> 'WRITING' AND pinned = 0
           AND NOT EXISTS (SELECT 1 FROM checkpoint_aliases a WHERE a.job_id = checkpoints.job_id AND a.checkpoint_id = checkpoints.checkpoint_id)`,
      ),
      unlistCheckpointFiles: db.prepare(
        "DELETE FROM checkpoint_files WHERE job_id = ? AND node_rank = ? AND relative_name > ? AND relative_name < ?",
      ),
      shrinkJob: db.prepare("UPDATE jobs SET file_count = file_count - ?, updated_at = ? WHERE id = ?"),
      finishCheckpointDelete: [
        db.prepare("DELETE FROM checkpoints WHERE job_id = ? AND checkpoint_id = ? AND deleting_at IS NOT NULL"),
        db.prepare("DELETE FROM checkpoint_ranks WHERE job_id = ? AND checkpoint_id = ?"),
        db.prepare("DELETE FROM checkpoint_requirements WHERE job_id = ? AND checkpoint_id = ?"),
      ],
      pendingCheckpointDeletes: db.prepare(
        `SELECT c.job_id, c.checkpoint_id, j.project_id FROM checkpoints c JOIN jobs j ON j.id = c.job_id
         WHERE c.deleting_at IS NOT NULL ORDER BY c.deleting_at`,
      ),
      aliasByName: db.prepare("SELECT * FROM checkpoint_aliases WHERE project_id = ? AND name = ?"),
      upsertAlias: db.prepare(
        `INSERT INTO checkpoint_aliases (project_id, name, job_id, checkpoint_id, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (project_id, name) DO UPDATE SET job_id = excluded.job_id, checkpoint_id = excluded.checkpoint_id, updated_at = excluded.updated_at`,
      ),
      deleteAlias: db.prepare("DELETE FROM checkpoint_aliases WHERE project_id = ? AND name = ?"),
      listAliases: db.prepare("SELECT * FROM checkpoint_aliases WHERE project_id = ? ORDER BY name"),
      nextAliasVersion: db.prepare("SELECT COALESCE(MAX(version), 0) + 1 AS v FROM checkpoint_alias_history WHERE project_id = ? AND name = ?"),
      insertAliasHistory: db.prepare(
        "INSERT INTO checkpoint_alias_history (project_id, name, version, job_id, checkpoint_id, changed_at) VALUES (?, ?, ?, ?, ?, ?)",
      ),
      aliasHistory: db.prepare("SELECT * FROM checkpoint_alias_history WHERE project_id = ? AND name = ? ORDER BY version"),
      liveCheckpointInProject: db.prepare(
        `SELECT 1 FROM checkpoints c JOIN jobs j ON j.id = c.job_id
         WHERE c.job_id = ? AND c.checkpoint_id = ? AND j.project_id = ? AND j.deleted_at IS NULL AND c.deleting_at IS NULL AND c.file_count > 0`,
      ),
      getPolicy: db.prepare("SELECT policy FROM retention_policies WHERE project_id = ?"),
      putPolicy: db.prepare(
        `INSERT INTO retention_policies (project_id, policy, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (project_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at`,
      ),
      touchJob: db.prepare("UPDATE jobs SET updated_at = ? WHERE id = ?"),
      // Names inside folder N sort between "N/" and "N0" ('0' follows '/' in byte order, SQLite's default).
      firstInside: db.prepare(
        "SELECT relative_name FROM checkpoint_files WHERE job_id = ? AND node_rank = ? AND relative_name > ? AND relative_name < ? LIMIT 1",
      ),
      insertUpload: db.prepare(
        `INSERT INTO uploads (upload_id, org_id, project_id, job_id, node_rank, relative_name, size_bytes, sha256,
                              part_size_bytes, part_count, backend_upload_id, created_at, expires_at)
         VALUES (@uploadId, @orgId, @projectId, @jobId, @nodeRank, @relativeName, @sizeBytes, @sha256,
                 @partSizeBytes, @partCount, @backendUploadId, @createdAt, @expiresAt)`,
      ),
      uploadScoped: db.prepare(`SELECT ${UPLOAD} FROM uploads WHERE org_id = ? AND job_id = ? AND upload_id = ?`),
      uploadById: db.prepare(`SELECT ${UPLOAD} FROM uploads WHERE upload_id = ?`),
      deleteUpload: db.prepare("DELETE FROM uploads WHERE upload_id = ?"),
      expiredUploads: db.prepare(`SELECT ${UPLOAD} FROM uploads WHERE expires_at < ? ORDER BY expires_at`),
      ping: db.prepare("SELECT 1"),
      insertAudit: db.prepare(
        "INSERT INTO audit_log (at, action, key_id, actor, org_id, subject, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ),
      auditSince: db.prepare(
        `SELECT id, at, action, key_id AS keyId, actor, org_id AS orgId, subject, details
         FROM audit_log WHERE at >= ? ORDER BY id LIMIT ?`,
      ),
      pageOfFiles: db.prepare("SELECT * FROM checkpoint_files WHERE job_id = ? AND seq >= ? ORDER BY seq LIMIT ?"),
      deleteFacts: db.prepare("DELETE FROM file_facts WHERE job_id = ? AND node_rank = ? AND relative_name = ?"),
      insertFacts: db.prepare(
        `INSERT INTO file_facts (job_id, node_rank, relative_name, checkpoint_id, format, error, parameter_count, tensor_count, summary, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      factsDetail: db.prepare("SELECT detail FROM file_facts WHERE job_id = ? AND node_rank = ? AND relative_name = ?"),
      // Names inside folder C sort between "C/" and "C0" (byte order).
      checkpointFilesWithFacts: db.prepare(
        `SELECT f.*, x.format, x.error, x.parameter_count, x.tensor_count, x.summary
         FROM checkpoint_files f LEFT JOIN file_facts x
           ON x.job_id = f.job_id AND x.node_rank = f.node_rank AND x.relative_name = f.relative_name
         WHERE f.job_id = @jobId AND f.relative_name > @low AND f.relative_name < @high
         ORDER BY f.node_rank, f.relative_name`,
      ),
    };
  }

  private migrate(): void {
    this.db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)");
    const applied = new Set(
      (this.db.prepare("SELECT version FROM schema_migrations").all() as { version: number }[]).map((r) => r.version),
    );
    // IMMEDIATE takes the write lock first, so two processes starting at once cannot both apply.
    const apply = this.db.transaction((version: number, sql: string) => {
      const again = this.db.prepare("SELECT 1 FROM schema_migrations WHERE version = ?").get(version);
      if (again) return;
      this.db.exec(sql);
      this.db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)").run(version, nowIso());
    });
    for (const m of SQLITE_MIGRATIONS) if (!applied.has(m.version)) apply.immediate(m.version, m.sql);
  }

  async close(): Promise<void> {
    this.db.close();
  }

  async ensureOrganisation(name: string): Promise<Organisation> {
    return this.db.transaction(() => {
      const found = this.stmts.orgByName.get(name) as { id: string; name: string; created_at: string } | undefined;
      if (found) return { id: found.id, name: found.name, createdAt: found.created_at };
      const org = { id: newId(), name, createdAt: nowIso() };
      this.stmts.insertOrg.run(org.id, org.name, org.createdAt);
      return org;
    }).immediate();
  }

  async insertApiKey(key: { keyId: string; orgId: string; secretHash: Buffer; ownerEmail?: string | null }): Promise<void> {
    this.stmts.insertKey.run(key.keyId, key.orgId, key.secretHash, nowIso(), key.ownerEmail ?? null);
  }

  private keyFromRow(r: {
    key_id: string;
    org_id: string;
    org_name: string;
    secret_hash: Buffer;
    created_at: string;
    revoked_at: string | null;
    owner_email: string | null;
  }): ApiKeyRecord {
    return {
      keyId: r.key_id,
      orgId: r.org_id,
      orgName: r.org_name,
      secretHash: r.secret_hash,
      createdAt: r.created_at,
      revokedAt: r.revoked_at,
      ownerEmail: r.owner_email,
    };
  }

  async findApiKey(keyId: string): Promise<ApiKeyRecord | null> {
    const row = this.stmts.keyById.get(keyId) as Parameters<SqliteMetadataStore["keyFromRow"]>[0] | undefined;
    return row ? this.keyFromRow(row) : null;
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    return (this.stmts.listKeys.all() as Parameters<SqliteMetadataStore["keyFromRow"]>[0][]).map((r) => this.keyFromRow(r));
  }

  async revokeApiKey(keyId: string): Promise<boolean> {
    return this.stmts.revokeKey.run(nowIso(), keyId).changes > 0;
  }

  async upsertProject(orgId: string, name: string): Promise<ProjectRecord> {
    return this.db.transaction(() => {
      const found = this.stmts.projectByName.get(orgId, name) as Parameters<typeof projectFromRow>[0] | undefined;
      const now = nowIso();
      if (found) {
        this.stmts.touchProject.run(now, found.id);
        return projectFromRow({ ...found, updated_at: now });
      }
      const id = newId();
      this.stmts.insertProject.run(id, orgId, name, now, now);
      return { id, orgId, name, createdAt: now, updatedAt: now };
    }).immediate();
  }

  async listProjects(orgId: string): Promise<ProjectRecord[]> {
    return (this.stmts.listProjects.all(orgId) as Parameters<typeof projectFromRow>[0][]).map(projectFromRow);
  }

  async getProject(orgId: string, projectId: string): Promise<ProjectRecord | null> {
    const row = this.stmts.projectById.get(orgId, projectId) as Parameters<typeof projectFromRow>[0] | undefined;
    return row ? projectFromRow(row) : null;
  }

  async getProjectById(projectId: string): Promise<ProjectRecord | null> {
    const row = this.stmts.projectByIdAnyOrg.get(projectId) as Parameters<typeof projectFromRow>[0] | undefined;
    return row ? projectFromRow(row) : null;
  }

  async markProjectDeleted(orgId: string, projectId: string): Promise<{ jobIds: string[] } | null> {
    return this.db.transaction(() => {
      const now = nowIso();
      if (this.stmts.markProjectDeleted.run(now, orgId, projectId).changes === 0) return null;
      this.stmts.markProjectJobsDeleted.run(now, projectId);
      return { jobIds: (this.stmts.jobIdsOfProject.all(projectId) as { id: string }[]).map((r) => r.id) };
    }).immediate();
  }

  async createJob(job: {
    id: string;
    orgId: string;
    projectId: string;
    name: string | null;
    spec: Record<string, unknown>;
    priority: number;
    createdByEmail?: string | null;
  }): Promise<JobRecord> {
    const now = nowIso();
    this.stmts.insertJob.run(job.id, job.projectId, job.orgId, job.name, job.priority, JSON.stringify(job.spec), now, now, job.createdByEmail ?? null);
    this.stmts.touchProject.run(now, job.projectId);
    return jobFromRow(this.stmts.liveJobById.get(job.id) as JobRow);
  }

  async listJobs(orgId: string, projectId: string): Promise<JobRecord[]> {
    return (this.stmts.listJobs.all(orgId, projectId) as JobRow[]).map(jobFromRow);
  }

  async latestJob(orgId: string, projectId: string): Promise<JobRecord | null> {
    const row = this.stmts.latestJob.get(orgId, projectId) as JobRow | undefined;
    return row ? jobFromRow(row) : null;
  }

  async latestJobs(orgId: string, projectIds: string[]): Promise<Map<string, JobRecord>> {
    const out = new Map<string, JobRecord>();
    for (const id of projectIds) {
      const job = await this.latestJob(orgId, id);
      if (job) out.set(id, job);
    }
    return out;
  }

  async getJob(orgId: string, projectId: string, jobId: string): Promise<JobRecord | null> {
    const row = this.stmts.jobById.get(orgId, projectId, jobId) as JobRow | undefined;
    return row ? jobFromRow(row) : null;
  }

  /** One statement per shape of search (which filters, how many statuses); values are bound. */
  private searchQuery(orgId: string, search: JobSearch): { sql: string; values: unknown[] } {
    const where = ["j.org_id = ?", "j.deleted_at IS NULL"];
    const values: unknown[] = [orgId];
    if (search.jobId !== null) where.push("j.id = ?"), values.push(search.jobId);
    if (search.projectId !== null) where.push("j.project_id = ?"), values.push(search.projectId);
    if (search.statuses && search.statuses.length > 0)
      where.push(`j.status IN (${search.statuses.map(() => "?").join(", ")})`), values.push(...search.statuses);
    const dir = search.orderBy.order === "asc" ? "ASC" : "DESC";
    values.push(search.limit);
    return {
      sql: `SELECT j.*, p.name AS project_name, p.created_at AS project_created_at, p.updated_at AS project_updated_at
            FROM jobs j JOIN projects p ON p.id = j.project_id AND p.deleted_at IS NULL
            WHERE ${where.join(" AND ")} ORDER BY j.created_at ${dir}, j.rowid ${dir} LIMIT ?`,
      values,
    };
  }

  async searchJobs(orgId: string, search: JobSearch): Promise<{ job: JobRecord; project: ProjectRecord }[]> {
    const { sql, values } = this.searchQuery(orgId, search);
    const rows = this.db.prepare(sql).all(...values) as (JobRow & { project_name: string; project_created_at: string; project_updated_at: string })[];
    return rows.map((r) => ({
      job: jobFromRow(r),
      project: projectFromRow({ id: r.project_id, org_id: r.org_id, name: r.project_name, created_at: r.project_created_at, updated_at: r.project_updated_at }),
    }));
  }

  async explainSearchJobs(orgId: string, search: JobSearch): Promise<string> {
    const { sql, values } = this.searchQuery(orgId, search);
    const rows = this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...values) as { detail: string }[];
    return rows.map((r) => r.detail).join("\n");
  }

  async getJobById(jobId: string): Promise<JobRecord | null> {
    const row = this.stmts.liveJobById.get(jobId) as JobRow | undefined;
    return row ? jobFromRow(row) : null;
  }

  async orgOfProject(projectId: string): Promise<string | null> {
    const row = this.db.prepare("SELECT org_id FROM projects WHERE id = ? AND deleted_at IS NULL").get(projectId) as { org_id: string } | undefined;
    return row?.org_id ?? null;
  }

  async updateJob(
    orgId: string,
    projectId: string,
    jobId: string,
    change: { status?: JobStatus; errorMessage?: string | null; syncStatus?: SyncStatus | null; priority?: number },
  ): Promise<JobRecord | null> {
    const sets: string[] = [];
    const values: unknown[] = [];
    if (change.status !== undefined) sets.push("status = ?"), values.push(change.status);
    if (change.errorMessage !== undefined) sets.push("error_message = ?"), values.push(change.errorMessage);
    if (change.syncStatus !== undefined) sets.push("sync_status = ?"), values.push(change.syncStatus);
    if (change.priority !== undefined) sets.push("priority = ?"), values.push(change.priority);
    sets.push("updated_at = ?");
    values.push(nowIso());
    const result = this.db
      .prepare(`UPDATE jobs SET ${sets.join(", ")} WHERE org_id = ? AND project_id = ? AND id = ? AND deleted_at IS NULL`)
      .run(...values, orgId, projectId, jobId);
    return result.changes === 0 ? null : this.getJob(orgId, projectId, jobId);
  }

  async markJobDeleted(orgId: string, projectId: string, jobId: string): Promise<boolean> {
    return this.stmts.markJobDeleted.run(nowIso(), orgId, projectId, jobId).changes > 0;
  }

  async jobsPendingPurge(): Promise<{ projectId: string; jobId: string }[]> {
    return (this.stmts.pendingPurge.all() as { project_id: string; id: string }[]).map((r) => ({
      projectId: r.project_id,
      jobId: r.id,
    }));
  }

  async purgeJob(jobId: string): Promise<void> {
    this.db.transaction(() => {
      // Only a job marked deleted is purged: a live job must keep its files (and fileCount).
      if (!this.stmts.deletedJobById.get(jobId)) return;
      this.stmts.purgeFiles.run(jobId);
      this.stmts.purgeBlobWrites.run(jobId);
      this.purgeLogLines(jobId);
      for (const purge of this.stmts.purgeCheckpointTables) purge.run(jobId);
      this.stmts.purgeJob.run(jobId);
    }).immediate();
  }

  async purgeDeletedProjects(): Promise<void> {
    this.db.transaction(() => {
      for (const purge of this.stmts.purgeProjectExtras) purge.run();
      this.stmts.purgeProjects.run();
    }).immediate();
  }

  async commitFile(file: {
    jobId: string;
    nodeRank: number;
    relativeName: string;
    sizeBytes: number;
    sha256: string | null;
    blobKey?: string | null;
    maxFilesPerJob?: number;
    facts?: StoredFacts | null;
  }): Promise<CommittedFile | "job-gone" | "too-many-files" | "checkpoint-deleting" | "path-conflict"> {
    const blobKey = file.blobKey ?? null;
    const recordFacts = (checkpointId: string | null) => {
      this.stmts.deleteFacts.run(file.jobId, file.nodeRank, file.relativeName);
      const x = file.facts;
      if (x) this.stmts.insertFacts.run(file.jobId, file.nodeRank, file.relativeName, checkpointId, x.format, x.error, x.parameterCount, x.tensorCount, x.summary, x.detail);
    };
    return this.db.transaction((): CommittedFile | "job-gone" | "too-many-files" | "checkpoint-deleting" | "path-conflict" => {
      const job = this.stmts.liveJobById.get(file.jobId) as JobRow | undefined;
      if (!job) return "job-gone";
      const checkpointId = checkpointIdOf(file.relativeName);
      const checkpoint = checkpointId === null ? undefined : (this.stmts.checkpointRow.get(file.jobId, checkpointId) as CheckpointRow | undefined);
      if (checkpoint?.deleting_at) return "checkpoint-deleting";
      const now = nowIso();
      const existing = this.stmts.fileByName.get(file.jobId, file.nodeRank, file.relativeName) as FileRow | undefined;
      if (!existing && this.pathConflict(file.jobId, file.nodeRank, file.relativeName) !== null) return "path-conflict";
      if (blobKey !== null) this.stmts.endBlobWrite.run(blobKey);
      let record: FileRecord;
      if (existing) {
        this.stmts.replaceFile.run(file.sizeBytes, file.sha256, now, blobKey, file.jobId, file.nodeRank, file.relativeName);
        this.stmts.touchJob.run(now, file.jobId);
        record = fileFromRow({ ...existing, size_bytes: file.sizeBytes, sha256: file.sha256, last_modified: now, blob_key: blobKey });
      } else {
        if (file.maxFilesPerJob !== undefined && job.file_count >= file.maxFilesPerJob) return "too-many-files";
        const seq = job.next_seq;
        this.stmts.insertFile.run(file.jobId, seq, file.nodeRank, file.relativeName, file.sizeBytes, file.sha256, now, now, blobKey);
        this.stmts.bumpFileCount.run(now, file.jobId);
        record = {
          jobId: file.jobId,
          seq,
          nodeRank: file.nodeRank,
          relativeName: file.relativeName,
          sizeBytes: file.sizeBytes,
          sha256: file.sha256,
          lastModified: now,
          createdAt: now,
          blobKey,
        };
      }
      recordFacts(checkpointId);
      if (checkpointId !== null) {
        const adapter = isAdapterConfig(file.relativeName) ? 1 : 0;
        if (!checkpoint) this.stmts.insertCheckpoint.run(file.jobId, checkpointId, file.sizeBytes, record.seq, now, now, adapter);
        else this.stmts.growCheckpoint.run(file.sizeBytes - (existing?.size_bytes ?? 0), existing ? 0 : 1, now, adapter, file.jobId, checkpointId);
        this.stmts.addRank.run(file.jobId, checkpointId, file.nodeRank);
        if (this.stmts.unmeetRequirement.run(file.jobId, file.nodeRank, file.relativeName).changes > 0)
          this.stmts.bumpPending.run(1, file.jobId, checkpointId);
        const change = stateAfterCommit({
          current: (checkpoint?.state ?? "WRITING") as CheckpointState,
          isMarker: isCompletionMarker(file.relativeName),
          replacedWithDifferentBytes:
            existing !== undefined && (existing.size_bytes !== file.sizeBytes || existing.sha256 === null || existing.sha256 !== file.sha256),
        });
        if (change) this.stmts.setCheckpointState.run(change.state, change.completedBy ? now : null, change.completedBy, file.jobId, checkpointId);
      }
      return { file: record, replaced: existing ? fileFromRow(existing) : null };
    }).immediate();
  }

  async listFiles(jobId: string, offset: number, limit: number): Promise<FileRecord[]> {
    return (this.stmts.pageOfFiles.all(jobId, offset, limit) as FileRow[]).map(fileFromRow);
  }

  async getFile(jobId: string, nodeRank: number, relativeName: string): Promise<FileRecord | null> {
    const row = this.stmts.fileByName.get(jobId, nodeRank, relativeName) as FileRow | undefined;
    return row ? fileFromRow(row) : null;
  }

  async beginBlobWrite(blobKey: string, jobId: string): Promise<void> {
    this.stmts.beginBlobWrite.run(blobKey, jobId, nowIso());
  }

  async endBlobWrite(blobKey: string): Promise<void> {
    this.stmts.endBlobWrite.run(blobKey);
  }

  /** Point lookups on indexes inside one read transaction: in-process, so a batch costs no round trips. */
  async referencedBlobKeys(refs: readonly BlobKeyRef[], writesSince: string): Promise<Set<string>> {
    return this.db.transaction(() => {
      const referenced = new Set<string>();
      for (const ref of refs) {
        const found = ref.legacy
          ? this.stmts.legacyFileByName.get(ref.jobId, ref.nodeRank, ref.relativeName)
          : this.stmts.fileByBlobKey.get(ref.key) ?? this.stmts.liveBlobWrite.get(ref.key, writesSince);
        if (found) referenced.add(ref.key);
      }
      return referenced;
    })();
  }

  async findPathConflict(jobId: string, nodeRank: number, relativeName: string): Promise<string | null> {
    return this.pathConflict(jobId, nodeRank, relativeName);
  }

  private pathConflict(jobId: string, nodeRank: number, relativeName: string): string | null {
    for (const ancestor of ancestorsOf(relativeName))
      if (this.stmts.fileByName.get(jobId, nodeRank, ancestor)) return ancestor;
    const inside = this.stmts.firstInside.get(jobId, nodeRank, `${relativeName}/`, `${relativeName}0`) as { relative_name: string } | undefined;
    return inside?.relative_name ?? null;
  }

  async summarizeCheckpoints(jobId: string): Promise<CheckpointSummary[]> {
    return (this.stmts.liveCheckpoints.all(jobId) as CheckpointRow[]).map(checkpointFromRow);
  }

  private liveCheckpoint(jobId: string, checkpointId: string): CheckpointRow | null {
    const row = this.stmts.checkpointRow.get(jobId, checkpointId) as CheckpointRow | undefined;
    return row && row.deleting_at === null && row.file_count > 0 && this.stmts.liveJobById.get(jobId) ? row : null;
  }

  async getCheckpoint(jobId: string, checkpointId: string): Promise<CheckpointSummary | null> {
    const row = this.liveCheckpoint(jobId, checkpointId);
    return row ? checkpointFromRow(row) : null;
  }

  async completeCheckpoint(jobId: string, checkpointId: string, reason: CompletionReason): Promise<CheckpointSummary | null> {
    return this.db.transaction(() => {
      const row = this.liveCheckpoint(jobId, checkpointId);
      if (!row) return null;
      if (row.state !== "COMPLETE") this.stmts.setCheckpointState.run("COMPLETE", nowIso(), reason, jobId, checkpointId);
      return checkpointFromRow(this.stmts.checkpointRow.get(jobId, checkpointId) as CheckpointRow);
    }).immediate();
  }

  async settleCheckpoints(jobId: string, change: StateChange, except: readonly string[]): Promise<string[]> {
    return this.db.transaction(() => {
      const skip = new Set(except);
      const now = nowIso();
      const changed: string[] = [];
      for (const { checkpoint_id } of this.stmts.writingCheckpoints.all(jobId) as { checkpoint_id: string }[]) {
        if (skip.has(checkpoint_id)) continue;
        this.stmts.setCheckpointState.run(change.state, change.completedBy ? now : null, change.completedBy, jobId, checkpoint_id);
        changed.push(checkpoint_id);
      }
      return changed;
    }).immediate();
  }

  async setPinned(jobId: string, checkpointId: string, pinned: boolean): Promise<CheckpointSummary | null> {
    if (!this.liveCheckpoint(jobId, checkpointId)) return null;
    this.stmts.setPinned.run(pinned ? 1 : 0, jobId, checkpointId);
    return this.getCheckpoint(jobId, checkpointId);
  }

  async setTrainerState(jobId: string, checkpointId: string, summary: TrainerStateSummary): Promise<void> {
    this.stmts.setTrainerState.run(JSON.stringify(summary), jobId, checkpointId);
  }

  async setRequirements(jobId: string, checkpointId: string, nodeRank: number, relativeNames: readonly string[]): Promise<{ relativeName: string; sizeBytes: number }[]> {
    return this.db.transaction(() => {
      this.stmts.dropRequirements.run(jobId, checkpointId, nodeRank);
      const present: { relativeName: string; sizeBytes: number }[] = [];
      for (const name of relativeNames) {
        this.stmts.insertRequirement.run(jobId, checkpointId, nodeRank, name);
        const file = this.stmts.fileByName.get(jobId, nodeRank, name) as FileRow | undefined;
        if (file) present.push({ relativeName: name, sizeBytes: file.size_bytes });
      }
      const { n } = this.stmts.countPending.get(jobId, checkpointId) as { n: number };
      this.stmts.setPending.run(n, jobId, checkpointId);
      return present;
    }).immediate();
  }

  async meetRequirement(jobId: string, nodeRank: number, relativeName: string, sizeBytes: number): Promise<CheckpointSummary | null> {
    return this.db.transaction(() => {
      const requirement = this.stmts.requirement.get(jobId, nodeRank, relativeName) as { checkpoint_id: string; met: number } | undefined;
      if (!requirement) return null;
      const file = this.stmts.fileByName.get(jobId, nodeRank, relativeName) as FileRow | undefined;
      const checkpointId = requirement.checkpoint_id;
      if (requirement.met === 0 && file && file.size_bytes === sizeBytes) {
        this.stmts.meetRequirement.run(jobId, nodeRank, relativeName);
        const { n } = this.stmts.countPending.get(jobId, checkpointId) as { n: number };
        this.stmts.setPending.run(n, jobId, checkpointId);
        const row = this.stmts.checkpointRow.get(jobId, checkpointId) as CheckpointRow | undefined;
        if (row && n === 0 && row.state !== "COMPLETE" && row.deleting_at === null)
          this.stmts.setCheckpointState.run("COMPLETE", nowIso(), "safetensors-index", jobId, checkpointId);
      }
      const row = this.liveCheckpoint(jobId, checkpointId);
      return row ? checkpointFromRow(row) : null;
    }).immediate();
  }

  async openUploadNames(jobId: string): Promise<string[]> {
    return (this.stmts.openUploadNames.all(jobId) as { relative_name: string }[]).map((r) => r.relative_name);
  }

  async beginCheckpointDelete(jobId: string, checkpointId: string): Promise<{ nodeRanks: number[] } | null> {
    return this.db.transaction(() => {
      if (!this.stmts.liveJobById.get(jobId)) return null;
      const now = nowIso();
      if (this.stmts.markCheckpointDeleting.run(now, jobId, checkpointId).changes === 0) return null;
      const nodeRanks = (this.stmts.ranksOf.all(jobId, checkpointId) as { node_rank: number }[]).map((r) => r.node_rank);
      let unlisted = 0;
      // Names inside folder C sort between "C/" and "C0" ('0' follows '/' in byte order).
      for (const rank of nodeRanks) unlisted += this.stmts.unlistCheckpointFiles.run(jobId, rank, `${checkpointId}/`, `${checkpointId}0`).changes;
      this.stmts.shrinkJob.run(unlisted, now, jobId);
      return { nodeRanks };
    }).immediate();
  }

  async finishCheckpointDelete(jobId: string, checkpointId: string): Promise<void> {
    this.db.transaction(() => {
      for (const step of this.stmts.finishCheckpointDelete) step.run(jobId, checkpointId);
    }).immediate();
  }

  async checkpointDeletesPending(): Promise<CheckpointDeletion[]> {
    return (this.stmts.pendingCheckpointDeletes.all() as { job_id: string; checkpoint_id: string; project_id: string }[]).map((r) => ({
      projectId: r.project_id,
      jobId: r.job_id,
      checkpointId: r.checkpoint_id,
      nodeRanks: (this.stmts.ranksOf.all(r.job_id, r.checkpoint_id) as { node_rank: number }[]).map((x) => x.node_rank),
    }));
  }

  async listFileFacts(jobId: string, formats: readonly string[]): Promise<(FileFactsRecord & { checkpointId: string | null })[]> {
    if (formats.length === 0) return [];
    const marks = formats.map(() => "?").join(", ");
    return this.db
      .prepare(`SELECT ${FACTS}, checkpoint_id AS checkpointId FROM file_facts WHERE job_id = ? AND format IN (${marks}) ORDER BY node_rank, relative_name`)
      .all(jobId, ...formats) as (FileFactsRecord & { checkpointId: string | null })[];
  }

  async listCheckpointFilesWithFacts(jobId: string, checkpointId: string): Promise<{ file: FileRecord; facts: FileFactsRecord | null }[]> {
    const rows = this.stmts.checkpointFilesWithFacts.all({ jobId, low: `${checkpointId}/`, high: `${checkpointId}0` }) as (FileRow & {
      format: string | null;
      error: string | null;
      parameter_count: number | null;
      tensor_count: number | null;
      summary: string | null;
    })[];
    return rows.map((r) => ({
      file: fileFromRow(r),
      facts:
        r.format === null
          ? null
          : { nodeRank: r.node_rank, relativeName: r.relative_name, format: r.format as FileFormat, error: r.error, parameterCount: r.parameter_count, tensorCount: r.tensor_count ?? 0, summary: r.summary ?? "{}" },
    }));
  }

  async factsDetail(jobId: string, nodeRank: number, relativeName: string): Promise<string | null> {
    const row = this.stmts.factsDetail.get(jobId, nodeRank, relativeName) as { detail: string | null } | undefined;
    return row?.detail ?? null;
  }

  private recordAliasMove(projectId: string, name: string, jobId: string | null, checkpointId: string | null, now: string): void {
    const { v } = this.stmts.nextAliasVersion.get(projectId, name) as { v: number };
    this.stmts.insertAliasHistory.run(projectId, name, v, jobId, checkpointId, now);
  }

  async setAlias(projectId: string, name: string, jobId: string, checkpointId: string): Promise<AliasRecord | "checkpoint-gone"> {
    return this.db.transaction((): AliasRecord | "checkpoint-gone" => {
      if (!this.stmts.liveCheckpointInProject.get(jobId, checkpointId, projectId)) return "checkpoint-gone";
      const now = nowIso();
      const current = this.stmts.aliasByName.get(projectId, name) as AliasRow | undefined;
      if (current && current.job_id === jobId && current.checkpoint_id === checkpointId) return aliasFromRow(current);
      this.stmts.upsertAlias.run(projectId, name, jobId, checkpointId, now);
      this.recordAliasMove(projectId, name, jobId, checkpointId, now);
      return { projectId, name, jobId, checkpointId, updatedAt: now };
    }).immediate();
  }

  async removeAlias(projectId: string, name: string): Promise<boolean> {
    return this.db.transaction(() => {
      if (this.stmts.deleteAlias.run(projectId, name).changes === 0) return false;
      this.recordAliasMove(projectId, name, null, null, nowIso());
      return true;
    }).immediate();
  }

  async listAliases(projectId: string): Promise<AliasRecord[]> {
    return (this.stmts.listAliases.all(projectId) as AliasRow[]).map(aliasFromRow);
  }

  async getAlias(projectId: string, name: string): Promise<AliasRecord | null> {
    const row = this.stmts.aliasByName.get(projectId, name) as AliasRow | undefined;
    return row ? aliasFromRow(row) : null;
  }

  async aliasHistory(projectId: string, name: string): Promise<AliasHistoryEntry[]> {
    return (
      this.stmts.aliasHistory.all(projectId, name) as { name: string; version: number; job_id: string | null; checkpoint_id: string | null; changed_at: string }[]
    ).map((r) => ({ name: r.name, version: r.version, jobId: r.job_id, checkpointId: r.checkpoint_id, changedAt: r.changed_at }));
  }

  async getRetentionPolicy(projectId: string): Promise<RetentionPolicy | null> {
    const row = this.stmts.getPolicy.get(projectId) as { policy: string } | undefined;
    return row ? (JSON.parse(row.policy) as RetentionPolicy) : null;
  }

  async putRetentionPolicy(projectId: string, policy: RetentionPolicy): Promise<void> {
    this.stmts.putPolicy.run(projectId, JSON.stringify(policy), nowIso());
  }

  async createUpload(upload: Omit<UploadRecord, "createdAt">): Promise<UploadRecord> {
    const record = { ...upload, createdAt: nowIso() };
    this.stmts.insertUpload.run(record);
    return record;
  }

  async getUpload(orgId: string, jobId: string, uploadId: string): Promise<UploadRecord | null> {
    return (this.stmts.uploadScoped.get(orgId, jobId, uploadId) as UploadRecord | undefined) ?? null;
  }

  async getUploadById(uploadId: string): Promise<UploadRecord | null> {
    return (this.stmts.uploadById.get(uploadId) as UploadRecord | undefined) ?? null;
  }

  async deleteUpload(uploadId: string): Promise<boolean> {
    return this.stmts.deleteUpload.run(uploadId).changes > 0;
  }

  async listExpiredUploads(now: string): Promise<UploadRecord[]> {
    return this.stmts.expiredUploads.all(now) as UploadRecord[];
  }

  // --- Training logs ----------------------------------------------------------------------------

  private logStatements?: ReturnType<SqliteMetadataStore["prepareLogStatements"]>;
  private readonly logQueries = new Map<string, Database.Statement>();

  private get logStmts() {
    return (this.logStatements ??= this.prepareLogStatements());
  }

  private prepareLogStatements() {
    const db = this.db;
    return {
      nextSeq: db.prepare("SELECT next_seq FROM job_log_state WHERE job_id = ?"),
      setNextSeq: db.prepare(
        "INSERT INTO job_log_state (job_id, next_seq) VALUES (?, ?) ON CONFLICT (job_id) DO UPDATE SET next_seq = excluded.next_seq",
      ),
      insertLine: db.prepare(
        "INSERT INTO job_log_lines (job_id, seq, ts_ns, node_rank, stream, level, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ),
      dropOldest: db.prepare("DELETE FROM job_log_lines WHERE job_id = ? AND seq < ?"),
      purgeLines: db.prepare("DELETE FROM job_log_lines WHERE job_id = ?"),
      purgeState: db.prepare("DELETE FROM job_log_state WHERE job_id = ?"),
    };
  }

  private purgeLogLines(jobId: string): void {
    this.logStmts.purgeLines.run(jobId);
    this.logStmts.purgeState.run(jobId);
  }

  async appendLogLines(jobId: string, lines: NewLogLine[], maxLinesPerJob: number): Promise<{ stored: number } | "job-gone"> {
    const stmts = this.logStmts;
    return this.db.transaction((): { stored: number } | "job-gone" => {
      if (!this.stmts.liveJobById.get(jobId)) return "job-gone";
      const state = stmts.nextSeq.get(jobId) as { next_seq: number } | undefined;
      let seq = state?.next_seq ?? 0;
      for (const line of lines) {
        stmts.insertLine.run(jobId, seq++, BigInt(line.timestampNs), line.nodeRank, line.stream, line.level, line.message);
      }
      stmts.setNextSeq.run(jobId, seq);
      if (seq > maxLinesPerJob) stmts.dropOldest.run(jobId, seq - maxLinesPerJob);
      return { stored: lines.length };
    }).immediate();
  }

  async queryLogLines(query: LogQuery): Promise<LogLineRecord[]> {
    const levels = query.levels ?? [];
    const key = `${query.direction}:${query.levels === null ? "all" : levels.length}`;
    let stmt = this.logQueries.get(key);
    if (!stmt) {
      const order = query.direction === "asc" ? "ASC" : "DESC";
      const levelFilter = query.levels === null ? "" : `AND level IN (${levels.map(() => "?").join(", ") || "NULL"})`;
      stmt = this.db.prepare(
        `SELECT seq, CAST(ts_ns AS TEXT) AS ts, node_rank, stream, level, message FROM job_log_lines
         WHERE job_id = ? AND ts_ns >= ? AND ts_ns < ? ${levelFilter}
         ORDER BY ts_ns ${order}, seq ${order} LIMIT ?`,
      );
      this.logQueries.set(key, stmt);
    }
    const rows = stmt.all(query.jobId, query.fromNs, query.untilNs, ...levels, query.limit) as {
      seq: number;
      ts: string;
      node_rank: number;
      stream: string;
      level: string | null;
      message: string;
    }[];
    return rows.map((r) => ({
      seq: r.seq,
      timestampNs: r.ts,
      nodeRank: r.node_rank,
      stream: r.stream as LogStream,
      level: r.level as LogLevel | null,
      message: r.message,
    }));
  }

  async ping(): Promise<void> {
    this.stmts.ping.get();
  }

  poolStats(): null {
    return null;
  }

  async appendAudit(entry: NewAuditEntry): Promise<AuditEntry> {
    const at = nowIso();
    const { lastInsertRowid } = this.stmts.insertAudit.run(at, entry.action, entry.keyId, entry.actor, entry.orgId, entry.subject, JSON.stringify(entry.details));
    return { ...entry, id: Number(lastInsertRowid), at };
  }

  async listAudit(query: { since?: string; limit?: number }): Promise<AuditEntry[]> {
    const rows = this.stmts.auditSince.all(query.since ?? "", query.limit ?? -1) as (Omit<AuditEntry, "details"> & { details: string })[];
    return rows.map((r) => ({ ...r, details: JSON.parse(r.details) as AuditEntry["details"] }));
  }
}
