import Database from "better-sqlite3";
import { newId } from "../../domain/ids.js";
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
import type { MetadataStore } from "./store.js";
import { SQLITE_MIGRATIONS } from "./sqlite-migrations.js";
import type { LogLevel, LogLineRecord, LogQuery, LogStream, NewLogLine } from "../../domain/logs.js";
import { ancestorsOf, checkpointIdOf } from "../../domain/names.js";
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
}

interface FileRow {
  job_id: string;
  seq: number;
  node_rank: number;
  relative_name: string;
  size_bytes: number;
  sha256: string | null;
  last_modified: string;
  created_at: string;
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
      purgeJob: db.prepare("DELETE FROM jobs WHERE id = ? AND deleted_at IS NOT NULL"),
      purgeProjects: db.prepare(
        "DELETE FROM projects WHERE deleted_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.project_id = projects.id)",
      ),
      fileByName: db.prepare("SELECT * FROM checkpoint_files WHERE job_id = ? AND node_rank = ? AND relative_name = ?"),
      replaceFile: db.prepare(
        `UPDATE checkpoint_files SET size_bytes = ?, sha256 = ?, last_modified = ?
         WHERE job_id = ? AND node_rank = ? AND relative_name = ?`,
      ),
      insertFile: db.prepare(
        `INSERT INTO checkpoint_files (job_id, seq, node_rank, relative_name, size_bytes, sha256, last_modified, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      bumpFileCount: db.prepare("UPDATE jobs SET file_count = file_count + 1, updated_at = ? WHERE id = ?"),
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
      checkpoints: db.prepare(
        `SELECT CASE WHEN instr(relative_name, '/') > 0 THEN substr(relative_name, 1, instr(relative_name, '/') - 1)
                     ELSE '.' END AS checkpoint_id,
                SUM(size_bytes) AS size_bytes, COUNT(*) AS file_count,
                MIN(created_at) AS created_at, MAX(last_modified) AS last_modified,
                MAX(relative_name = 'adapter_config.json' OR substr(relative_name, -20) = '/adapter_config.json') AS has_adapter
         FROM checkpoint_files WHERE job_id = ? GROUP BY checkpoint_id ORDER BY MIN(seq)`,
      ),
      deleteFacts: db.prepare("DELETE FROM file_facts WHERE job_id = ? AND node_rank = ? AND relative_name = ?"),
      insertFacts: db.prepare(
        `INSERT INTO file_facts (job_id, node_rank, relative_name, checkpoint_id, format, error, parameter_count, tensor_count, summary, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      factsDetail: db.prepare("SELECT detail FROM file_facts WHERE job_id = ? AND node_rank = ? AND relative_name = ?"),
      // Names inside folder C sort between "C/" and "C0" (byte order); root files have no '/'.
      checkpointFilesWithFacts: db.prepare(
        `SELECT f.*, x.format, x.error, x.parameter_count, x.tensor_count, x.summary
         FROM checkpoint_files f LEFT JOIN file_facts x
           ON x.job_id = f.job_id AND x.node_rank = f.node_rank AND x.relative_name = f.relative_name
         WHERE f.job_id = @jobId AND (CASE WHEN @root THEN instr(f.relative_name, '/') = 0
                                           ELSE f.relative_name > @low AND f.relative_name < @high END)
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
      this.purgeLogLines(jobId);
      this.stmts.purgeJob.run(jobId);
    }).immediate();
  }

  async purgeDeletedProjects(): Promise<void> {
    this.stmts.purgeProjects.run();
  }

  async commitFile(file: {
    jobId: string;
    nodeRank: number;
    relativeName: string;
    sizeBytes: number;
    sha256: string | null;
    maxFilesPerJob?: number;
    facts?: StoredFacts | null;
  }): Promise<FileRecord | "job-gone" | "too-many-files"> {
    const recordFacts = () => {
      this.stmts.deleteFacts.run(file.jobId, file.nodeRank, file.relativeName);
      const x = file.facts;
      if (x)
        this.stmts.insertFacts.run(file.jobId, file.nodeRank, file.relativeName, checkpointIdOf(file.relativeName), x.format, x.error, x.parameterCount, x.tensorCount, x.summary, x.detail);
    };
    return this.db.transaction((): FileRecord | "job-gone" | "too-many-files" => {
      const job = this.stmts.liveJobById.get(file.jobId) as JobRow | undefined;
      if (!job) return "job-gone";
      const now = nowIso();
      const existing = this.stmts.fileByName.get(file.jobId, file.nodeRank, file.relativeName) as FileRow | undefined;
      if (existing) {
        this.stmts.replaceFile.run(file.sizeBytes, file.sha256, now, file.jobId, file.nodeRank, file.relativeName);
        this.stmts.touchJob.run(now, file.jobId);
        recordFacts();
        return fileFromRow({ ...existing, size_bytes: file.sizeBytes, sha256: file.sha256, last_modified: now });
      }
      if (file.maxFilesPerJob !== undefined && job.file_count >= file.maxFilesPerJob) return "too-many-files";
      const seq = job.file_count;
      this.stmts.insertFile.run(file.jobId, seq, file.nodeRank, file.relativeName, file.sizeBytes, file.sha256, now, now);
      this.stmts.bumpFileCount.run(now, file.jobId);
      recordFacts();
      return {
        jobId: file.jobId,
        seq,
        nodeRank: file.nodeRank,
        relativeName: file.relativeName,
        sizeBytes: file.sizeBytes,
        sha256: file.sha256,
        lastModified: now,
        createdAt: now,
      };
    }).immediate();
  }

  async listFiles(jobId: string, offset: number, limit: number): Promise<FileRecord[]> {
    return (this.stmts.pageOfFiles.all(jobId, offset, limit) as FileRow[]).map(fileFromRow);
  }

  async getFile(jobId: string, nodeRank: number, relativeName: string): Promise<FileRecord | null> {
    const row = this.stmts.fileByName.get(jobId, nodeRank, relativeName) as FileRow | undefined;
    return row ? fileFromRow(row) : null;
  }

  /** adapter_config.json is matched exactly: LIKE would treat "_" as a wildcard and ignore case. */
  async findPathConflict(jobId: string, nodeRank: number, relativeName: string): Promise<string | null> {
    for (const ancestor of ancestorsOf(relativeName))
      if (this.stmts.fileByName.get(jobId, nodeRank, ancestor)) return ancestor;
    const inside = this.stmts.firstInside.get(jobId, nodeRank, `${relativeName}/`, `${relativeName}0`) as { relative_name: string } | undefined;
    return inside?.relative_name ?? null;
  }

  async summarizeCheckpoints(jobId: string): Promise<CheckpointSummary[]> {
    const rows = this.stmts.checkpoints.all(jobId) as {
      checkpoint_id: string;
      size_bytes: number;
      file_count: number;
      created_at: string;
      last_modified: string;
      has_adapter: number;
    }[];
    return rows.map((r) => ({
      checkpointId: r.checkpoint_id,
      sizeBytes: r.size_bytes,
      fileCount: r.file_count,
      createdAt: r.created_at,
      lastModified: r.last_modified,
      hasAdapterConfig: r.has_adapter === 1,
    }));
  }

  async listFileFacts(jobId: string, formats: readonly string[]): Promise<(FileFactsRecord & { checkpointId: string })[]> {
    if (formats.length === 0) return [];
    const marks = formats.map(() => "?").join(", ");
    return this.db
      .prepare(`SELECT ${FACTS}, checkpoint_id AS checkpointId FROM file_facts WHERE job_id = ? AND format IN (${marks}) ORDER BY node_rank, relative_name`)
      .all(jobId, ...formats) as (FileFactsRecord & { checkpointId: string })[];
  }

  async listCheckpointFilesWithFacts(jobId: string, checkpointId: string): Promise<{ file: FileRecord; facts: FileFactsRecord | null }[]> {
    const rows = this.stmts.checkpointFilesWithFacts.all({ jobId, root: checkpointId === "." ? 1 : 0, low: `${checkpointId}/`, high: `${checkpointId}0` }) as (FileRow & {
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
