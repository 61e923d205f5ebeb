import { ancestorsOf, checkpointIdOf } from "../../domain/names.js";
import type { FileFactsRecord, StoredFacts } from "../../domain/file-facts.js";
import pg from "pg";
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
import { migratePostgres } from "./postgres-migrations.js";
import { inTransaction } from "./postgres-transaction.js";
import type { LogLevel, LogLineRecord, LogQuery, LogStream, NewLogLine } from "../../domain/logs.js";

/**
 * The database clock, at the millisecond precision of `Date.toISOString()`: several servers
 * share one clock this way, and a timestamp reads back exactly as it was returned when written.
 */
const NOW = "date_trunc('milliseconds', now())";

/** bigint columns (sizes, counts) as JS numbers; refuses rather than silently rounds. */
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${text} is beyond Number.MAX_SAFE_INTEGER`);
  return n;
}

const parseTimestamptzAsDate = pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ) as (text: string) => Date;

/**
 * Per-pool type parsers (the global pg.types stay untouched): int8 → number, and timestamptz →
 * the ISO 8601 UTC string with milliseconds that the SQLite store returns ("…T12:17:41.450Z").
 */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") => {
    if (format === undefined || format === "text") {
      if (oid === pg.types.builtins.INT8) return parseInt8;
      if (oid === pg.types.builtins.TIMESTAMPTZ) return (text: string) => parseTimestamptzAsDate(text).toISOString();
    }
    return pg.types.getTypeParser(oid, format);
  }) as pg.CustomTypesConfig["getTypeParser"],
};

// Columns aliased to the domain records' field names: a row is the API object, no mapping step.
const ORG = `id, name, created_at AS "createdAt"`;
const KEY = `k.key_id AS "keyId", k.org_id AS "orgId", o.name AS "orgName", k.secret_hash AS "secretHash",
             k.created_at AS "createdAt", k.revoked_at AS "revokedAt", k.owner_email AS "ownerEmail"`;
const PROJECT = `id, org_id AS "orgId", name, created_at AS "createdAt", updated_at AS "updatedAt"`;
const JOB = `id, project_id AS "projectId", org_id AS "orgId", name, status, error_message AS "errorMessage",
             sync_status AS "checkpointSyncStatus", priority, spec, created_at AS "createdAt",
             updated_at AS "updatedAt", file_count AS "fileCount", created_by_email AS "createdByEmail"`;
/** JOB, of the jobs table aliased `j` (in joins). */
const JOB_OF_J = `j.id, j.project_id AS "projectId", j.org_id AS "orgId", j.name, j.status, j.error_message AS "errorMessage",
             j.sync_status AS "checkpointSyncStatus", j.priority, j.spec, j.created_at AS "createdAt",
             j.updated_at AS "updatedAt", j.file_count AS "fileCount", j.created_by_email AS "createdByEmail"`;
const FILE = `job_id AS "jobId", seq, node_rank AS "nodeRank", relative_name AS "relativeName",
              size_bytes AS "sizeBytes", sha256, last_modified AS "lastModified", created_at AS "createdAt"`;
const UPLOAD = `upload_id AS "uploadId", org_id AS "orgId", project_id AS "projectId", job_id AS "jobId",
                node_rank AS "nodeRank", relative_name AS "relativeName", size_bytes AS "sizeBytes", sha256,
                part_size_bytes AS "partSizeBytes", part_count AS "partCount", backend_upload_id AS "backendUploadId",
                created_at AS "createdAt", expires_at AS "expiresAt"`;
const LIVE = "deleted_at IS NULL";
const FACTS = `node_rank AS "nodeRank", relative_name AS "relativeName", format, error,
               parameter_count AS "parameterCount", tensor_count AS "tensorCount", summary`;
/** Newest first; created_seq breaks ties in creation order (SQLite uses rowid). */
const NEWEST_FIRST = "created_at DESC, created_seq DESC";

/**
 * The scale-out backend: several ckpt servers share one PostgreSQL database. Whatever SQLite
 * gets from having a single writer, this gets from row locks and ON CONFLICT, so concurrent
 * servers see exactly the behaviour one SQLite server gives (the shared conformance suite in
 * test/stores/metadata-store.suite.ts holds both to it).
 */
export class PostgresMetadataStore implements MetadataStore {
  readonly kind = "postgres";

  private constructor(private readonly pool: pg.Pool) {}

  /** Connects a pool to `url` and brings the schema up to date before returning. */
  static async open(url: string, options: { poolSize?: number } = {}): Promise<PostgresMetadataStore> {
    const poolSize = options.poolSize ?? 10;
    if (!Number.isInteger(poolSize) || poolSize < 1) throw new RangeError(`poolSize must be a positive integer, got ${poolSize}`);
    // A request waits at most connectionTimeoutMillis for a connection: with the database down
    // or hung it fails (503) instead of hanging, and readiness says why.
    const pool = new pg.Pool({ connectionString: url, max: poolSize, types: TYPES, application_name: "ckpt", connectionTimeoutMillis: 5_000 });
    // An idle connection that dies (server restart, network) must not crash the process: the
    // pool drops it, and the next query opens a new one or reports the error to its caller.
    pool.on("error", () => {});
    try {
      await migratePostgres(pool);
    } catch (err) {
      await pool.end().catch(() => {});
      throw err;
    }
    return new PostgresMetadataStore(pool);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async rows<T extends pg.QueryResultRow>(text: string, values: unknown[], name?: string): Promise<T[]> {
    return (await this.pool.query<T>({ text, values, ...(name ? { name } : {}) })).rows;
  }

  // --- Organisations and keys -----------------------------------------------------------------

  async ensureOrganisation(name: string): Promise<Organisation> {
    // DO NOTHING then read: if another server inserted the name first, our INSERT waits for its
    // commit, returns no row, and the SELECT (a new snapshot) sees the winner.
    const inserted = await this.rows<Organisation>(
      `INSERT INTO organisations (id, name, created_at) VALUES ($1, $2, ${NOW})
       ON CONFLICT (name) DO NOTHING RETURNING ${ORG}`,
      [newId(), name],
    );
    if (inserted[0]) return inserted[0];
    const [found] = await this.rows<Organisation>(`SELECT ${ORG} FROM organisations WHERE name = $1`, [name]);
    if (!found) throw new Error(`organisation ${JSON.stringify(name)} vanished while being ensured`);
    return found;
  }

  async insertApiKey(key: { keyId: string; orgId: string; secretHash: Buffer; ownerEmail?: string | null }): Promise<void> {
    await this.pool.query(
      `INSERT INTO api_keys (key_id, org_id, secret_hash, created_at, owner_email) VALUES ($1, $2, $3, ${NOW}, $4)`,
      [key.keyId, key.orgId, key.secretHash, key.ownerEmail ?? null],
    );
  }

  async findApiKey(keyId: string): Promise<ApiKeyRecord | null> {
    const [row] = await this.rows<ApiKeyRecord>(
      `SELECT ${KEY} FROM api_keys k JOIN organisations o ON o.id = k.org_id WHERE k.key_id = $1`,
      [keyId],
      "ckpt_find_api_key",
    );
    return row ?? null;
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    return this.rows<ApiKeyRecord>(
      `SELECT ${KEY} FROM api_keys k JOIN organisations o ON o.id = k.org_id ORDER BY k.created_at, k.key_id`,
      [],
    );
  }

  async revokeApiKey(keyId: string): Promise<boolean> {
    const result = await this.pool.query(
      `UPDATE api_keys SET revoked_at = ${NOW} WHERE key_id = $1 AND revoked_at IS NULL`,
      [keyId],
    );
    return (result.rowCount ?? 0) > 0;
  }

  // --- Projects -------------------------------------------------------------------------------

  async upsertProject(orgId: string, name: string): Promise<ProjectRecord> {
    // The conflict target is the partial unique index projects_org_name (live projects only).
    const [row] = await this.rows<ProjectRecord>(
      `INSERT INTO projects (id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, ${NOW}, ${NOW})
       ON CONFLICT (org_id, name) WHERE ${LIVE} DO UPDATE SET updated_at = EXCLUDED.updated_at
       RETURNING ${PROJECT}`,
      [newId(), orgId, name],
    );
    return row!;
  }

  async listProjects(orgId: string): Promise<ProjectRecord[]> {
    return this.rows<ProjectRecord>(
      `SELECT ${PROJECT} FROM projects WHERE org_id = $1 AND ${LIVE} ORDER BY created_at, id`,
      [orgId],
    );
  }

  async getProject(orgId: string, projectId: string): Promise<ProjectRecord | null> {
    const [row] = await this.rows<ProjectRecord>(
      `SELECT ${PROJECT} FROM projects WHERE org_id = $1 AND id = $2 AND ${LIVE}`,
      [orgId, projectId],
      "ckpt_get_project",
    );
    return row ?? null;
  }

  async getProjectById(projectId: string): Promise<ProjectRecord | null> {
    const [row] = await this.rows<ProjectRecord>(`SELECT ${PROJECT} FROM projects WHERE id = $1 AND ${LIVE}`, [projectId]);
    return row ?? null;
  }

  async markProjectDeleted(orgId: string, projectId: string): Promise<{ jobIds: string[] } | null> {
    return inTransaction(this.pool, async (db) => {
      const marked = await db.query(
        `UPDATE projects SET deleted_at = ${NOW} WHERE org_id = $1 AND id = $2 AND ${LIVE}`,
        [orgId, projectId],
      );
      if (marked.rowCount === 0) return null;
      await db.query(`UPDATE jobs SET deleted_at = ${NOW} WHERE project_id = $1 AND ${LIVE}`, [projectId]);
      const jobs = await db.query<{ id: string }>(
        "SELECT id FROM jobs WHERE project_id = $1 ORDER BY created_at, created_seq",
        [projectId],
      );
      return { jobIds: jobs.rows.map((r) => r.id) };
    });
  }

  // --- Jobs -----------------------------------------------------------------------------------

  async createJob(job: {
    id: string;
    orgId: string;
    projectId: string;
    name: string | null;
    spec: Record<string, unknown>;
    priority: number;
    createdByEmail?: string | null;
  }): Promise<JobRecord> {
    // One statement, so the job and the project's updated_at change together.
    const [row] = await this.rows<JobRecord>(
      `WITH job AS (
         INSERT INTO jobs (id, project_id, org_id, name, status, priority, spec, created_at, updated_at, file_count, created_by_email)
         VALUES ($1, $2, $3, $4, 'TRAINING_JOB_CREATED', $5, $6, ${NOW}, ${NOW}, 0, $7)
         RETURNING ${JOB}
       ), touched AS (
         UPDATE projects SET updated_at = ${NOW} WHERE id = $2
       )
       SELECT * FROM job`,
      [job.id, job.projectId, job.orgId, job.name, job.priority, JSON.stringify(job.spec), job.createdByEmail ?? null],
    );
    return row!;
  }

  async listJobs(orgId: string, projectId: string): Promise<JobRecord[]> {
    return this.rows<JobRecord>(
      `SELECT ${JOB} FROM jobs WHERE org_id = $1 AND project_id = $2 AND ${LIVE} ORDER BY ${NEWEST_FIRST}`,
      [orgId, projectId],
    );
  }

  async latestJob(orgId: string, projectId: string): Promise<JobRecord | null> {
    const [row] = await this.rows<JobRecord>(
      `SELECT ${JOB} FROM jobs WHERE org_id = $1 AND project_id = $2 AND ${LIVE} ORDER BY ${NEWEST_FIRST} LIMIT 1`,
      [orgId, projectId],
      "ckpt_latest_job",
    );
    return row ?? null;
  }

  async latestJobs(orgId: string, projectIds: string[]): Promise<Map<string, JobRecord>> {
    const out = new Map<string, JobRecord>();
    if (projectIds.length === 0) return out;
    // One round trip for the whole project list, instead of one latestJob per project.
    const rows = await this.rows<JobRecord>(
      `SELECT DISTINCT ON (project_id) ${JOB} FROM jobs
       WHERE org_id = $1 AND project_id = ANY($2::text[]) AND ${LIVE}
       ORDER BY project_id, ${NEWEST_FIRST}`,
      [orgId, projectIds],
    );
    for (const job of rows) out.set(job.projectId, job);
    return out;
  }

  async getJob(orgId: string, projectId: string, jobId: string): Promise<JobRecord | null> {
    const [row] = await this.rows<JobRecord>(
      `SELECT ${JOB} FROM jobs WHERE org_id = $1 AND project_id = $2 AND id = $3 AND ${LIVE}`,
      [orgId, projectId, jobId],
      "ckpt_get_job",
    );
    return row ?? null;
  }

  private searchQuery(orgId: string, search: JobSearch): { text: string; values: unknown[] } {
    const values: unknown[] = [orgId];
    const where = ["j.org_id = $1", "j.deleted_at IS NULL"];
    const bind = (v: unknown) => `$${values.push(v)}`;
    if (search.jobId !== null) where.push(`j.id = ${bind(search.jobId)}`);
    if (search.projectId !== null) where.push(`j.project_id = ${bind(search.projectId)}`);
    if (search.statuses && search.statuses.length > 0) where.push(`j.status = ANY(${bind(search.statuses)}::text[])`);
    const dir = search.orderBy.order === "asc" ? "ASC" : "DESC";
    const limit = bind(search.limit);
    return {
      text: `SELECT ${JOB_OF_J}, p.name AS "projectName", p.created_at AS "projectCreatedAt", p.updated_at AS "projectUpdatedAt"
             FROM jobs j JOIN projects p ON p.id = j.project_id AND p.deleted_at IS NULL
             WHERE ${where.join(" AND ")} ORDER BY j.created_at ${dir}, j.created_seq ${dir} LIMIT ${limit}`,
      values,
    };
  }

  async searchJobs(orgId: string, search: JobSearch): Promise<{ job: JobRecord; project: ProjectRecord }[]> {
    const { text, values } = this.searchQuery(orgId, search);
    const rows = await this.rows<JobRecord & { projectName: string; projectCreatedAt: string; projectUpdatedAt: string }>(text, values);
    return rows.map(({ projectName, projectCreatedAt, projectUpdatedAt, ...job }) => ({
      job,
      project: { id: job.projectId, orgId: job.orgId, name: projectName, createdAt: projectCreatedAt, updatedAt: projectUpdatedAt },
    }));
  }

  async explainSearchJobs(orgId: string, search: JobSearch): Promise<string> {
    const { text, values } = this.searchQuery(orgId, search);
    // Fresh statistics first, so the plan is the one a database that autovacuum keeps analysed would pick.
    await this.pool.query("ANALYZE jobs");
    const rows = await this.rows<{ "QUERY PLAN": string }>(`EXPLAIN ${text}`, values);
    return rows.map((r) => r["QUERY PLAN"]).join("\n");
  }

  async updateJob(
    orgId: string,
    projectId: string,
    jobId: string,
    change: { status?: JobStatus; errorMessage?: string | null; syncStatus?: SyncStatus | null; priority?: number },
  ): Promise<JobRecord | null> {
    const values: unknown[] = [orgId, projectId, jobId];
    const sets: string[] = [];
    const set = (column: string, value: unknown): void => {
      values.push(value);
      sets.push(`${column} = $${values.length}`);
    };
    if (change.status !== undefined) set("status", change.status);
    if (change.errorMessage !== undefined) set("error_message", change.errorMessage);
    if (change.syncStatus !== undefined) set("sync_status", change.syncStatus);
    if (change.priority !== undefined) set("priority", change.priority);
    sets.push(`updated_at = ${NOW}`);
    const [row] = await this.rows<JobRecord>(
      `UPDATE jobs SET ${sets.join(", ")} WHERE org_id = $1 AND project_id = $2 AND id = $3 AND ${LIVE}
       RETURNING ${JOB}`,
      values,
    );
    return row ?? null;
  }

  async markJobDeleted(orgId: string, projectId: string, jobId: string): Promise<boolean> {
    const result = await this.pool.query(
      `UPDATE jobs SET deleted_at = ${NOW} WHERE org_id = $1 AND project_id = $2 AND id = $3 AND ${LIVE}`,
      [orgId, projectId, jobId],
    );
    return (result.rowCount ?? 0) > 0;
  }

  async jobsPendingPurge(): Promise<{ projectId: string; jobId: string }[]> {
    return this.rows<{ projectId: string; jobId: string }>(
      `SELECT project_id AS "projectId", id AS "jobId" FROM jobs WHERE deleted_at IS NOT NULL ORDER BY deleted_at, id`,
      [],
    );
  }

  async purgeJob(jobId: string): Promise<void> {
    await inTransaction(this.pool, async (db) => {
      // Only a job marked deleted is purged; the lock makes a concurrent purge of it wait.
      const job = await db.query("SELECT 1 FROM jobs WHERE id = $1 AND deleted_at IS NOT NULL FOR UPDATE", [jobId]);
      if (job.rowCount === 0) return;
      await db.query("DELETE FROM checkpoint_files WHERE job_id = $1", [jobId]);
      await db.query("DELETE FROM job_log_lines WHERE job_id = $1", [jobId]);
      await db.query("DELETE FROM job_log_state WHERE job_id = $1", [jobId]);
      await db.query("DELETE FROM jobs WHERE id = $1", [jobId]);
    });
  }

  async purgeDeletedProjects(): Promise<void> {
    await this.pool.query(
      `DELETE FROM projects WHERE deleted_at IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.project_id = projects.id)`,
    );
  }

  // --- Files ----------------------------------------------------------------------------------

  async commitFile(file: {
    jobId: string;
    nodeRank: number;
    relativeName: string;
    sizeBytes: number;
    sha256: string | null;
    maxFilesPerJob?: number;
    facts?: StoredFacts | null;
  }): Promise<FileRecord | "job-gone" | "too-many-files"> {
    const recordFacts = async (db: pg.PoolClient) => {
      await db.query({
        name: "ckpt_delete_facts",
        text: "DELETE FROM file_facts WHERE job_id = $1 AND node_rank = $2 AND relative_name = $3",
        values: [file.jobId, file.nodeRank, file.relativeName],
      });
      const x = file.facts;
      if (x)
        await db.query({
          name: "ckpt_insert_facts",
          text: `INSERT INTO file_facts (job_id, node_rank, relative_name, checkpoint_id, format, error, parameter_count, tensor_count, summary, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          values: [file.jobId, file.nodeRank, file.relativeName, checkpointIdOf(file.relativeName), x.format, x.error, x.parameterCount, x.tensorCount, x.summary, x.detail],
        });
    };
    return inTransaction(this.pool, async (db): Promise<FileRecord | "job-gone" | "too-many-files"> => {
      // The job row lock serialises commits to one job across every server: whoever holds it
      // reads the current file_count, so positions stay dense and each name is inserted once.
      const job = await db.query<{ fileCount: number }>({
        name: "ckpt_lock_job",
        text: `SELECT file_count AS "fileCount" FROM jobs WHERE id = $1 AND ${LIVE} FOR UPDATE`,
        values: [file.jobId],
      });
      const fileCount = job.rows[0]?.fileCount;
      if (fileCount === undefined) return "job-gone";

      // A replacement keeps its position (and createdAt). Read after the lock, so a commit of
      // the same name by another server that just released it is seen here.
      const replaced = await db.query<FileRecord>({
        name: "ckpt_replace_file",
        text: `WITH f AS (
                 UPDATE checkpoint_files SET size_bytes = $4, sha256 = $5, last_modified = ${NOW}
                 WHERE job_id = $1 AND node_rank = $2 AND relative_name = $3
                 RETURNING ${FILE}
               ), touched AS (
                 UPDATE jobs SET updated_at = ${NOW} WHERE id = $1 AND EXISTS (SELECT 1 FROM f)
               )
               SELECT * FROM f`,
        values: [file.jobId, file.nodeRank, file.relativeName, file.sizeBytes, file.sha256],
      });
      if (replaced.rows[0]) {
        await recordFacts(db);
        return replaced.rows[0];
      }

      if (file.maxFilesPerJob !== undefined && fileCount >= file.maxFilesPerJob) return "too-many-files";
      const inserted = await db.query<FileRecord>({
        name: "ckpt_insert_file",
        text: `WITH f AS (
                 INSERT INTO checkpoint_files
                   (job_id, seq, node_rank, relative_name, size_bytes, sha256, last_modified, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, ${NOW}, ${NOW})
                 RETURNING ${FILE}
               ), counted AS (
                 UPDATE jobs SET file_count = file_count + 1, updated_at = ${NOW} WHERE id = $1
               )
               SELECT * FROM f`,
        values: [file.jobId, fileCount, file.nodeRank, file.relativeName, file.sizeBytes, file.sha256],
      });
      await recordFacts(db);
      return inserted.rows[0]!;
    });
  }

  async listFiles(jobId: string, offset: number, limit: number): Promise<FileRecord[]> {
    // A seek on the primary key (job_id, seq): the cost of a page does not grow with offset.
    return this.rows<FileRecord>(
      `SELECT ${FILE} FROM checkpoint_files WHERE job_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3`,
      [jobId, offset, limit],
      "ckpt_list_files",
    );
  }

  async getFile(jobId: string, nodeRank: number, relativeName: string): Promise<FileRecord | null> {
    const [row] = await this.rows<FileRecord>(
      `SELECT ${FILE} FROM checkpoint_files WHERE job_id = $1 AND node_rank = $2 AND relative_name = $3`,
      [jobId, nodeRank, relativeName],
      "ckpt_get_file",
    );
    return row ?? null;
  }

  async findPathConflict(jobId: string, nodeRank: number, relativeName: string): Promise<string | null> {
    const ancestors = ancestorsOf(relativeName);
    if (ancestors.length > 0) {
      const [hit] = await this.rows<{ name: string }>(
        "SELECT relative_name AS name FROM checkpoint_files WHERE job_id = $1 AND node_rank = $2 AND relative_name = ANY($3::text[]) LIMIT 1",
        [jobId, nodeRank, ancestors],
        "ckpt_conflict_ancestor",
      );
      if (hit) return hit.name;
    }
    // Byte order ("C" collation, served by the index of migration 2): names inside folder N sort
    // between "N/" and "N0".
    const [inside] = await this.rows<{ name: string }>(
      `SELECT relative_name AS name FROM checkpoint_files
       WHERE job_id = $1 AND node_rank = $2 AND relative_name COLLATE "C" > $3 AND relative_name COLLATE "C" < $4 LIMIT 1`,
      [jobId, nodeRank, `${relativeName}/`, `${relativeName}0`],
      "ckpt_conflict_inside",
    );
    return inside?.name ?? null;
  }

  async summarizeCheckpoints(jobId: string): Promise<CheckpointSummary[]> {
    // A checkpoint is a top-level folder; files at the root form ".". adapter_config.json is
    // matched exactly (no LIKE: "_" is a wildcard there), at any depth inside the folder.
    return this.rows<CheckpointSummary>(
      `SELECT CASE WHEN strpos(relative_name, '/') > 0 THEN split_part(relative_name, '/', 1) ELSE '.' END
                AS "checkpointId",
              SUM(size_bytes)::bigint AS "sizeBytes",
              COUNT(*)::integer AS "fileCount",
              MIN(created_at) AS "createdAt",
              MAX(last_modified) AS "lastModified",
              bool_or(relative_name = 'adapter_config.json' OR right(relative_name, 20) = '/adapter_config.json')
                AS "hasAdapterConfig"
       FROM checkpoint_files WHERE job_id = $1
       GROUP BY 1 ORDER BY MIN(seq)`,
      [jobId],
    );
  }

  async listFileFacts(jobId: string, formats: readonly string[]): Promise<(FileFactsRecord & { checkpointId: string })[]> {
    if (formats.length === 0) return [];
    return this.rows<FileFactsRecord & { checkpointId: string }>(
      `SELECT ${FACTS}, checkpoint_id AS "checkpointId" FROM file_facts
       WHERE job_id = $1 AND format = ANY($2::text[]) ORDER BY node_rank, relative_name COLLATE "C"`,
      [jobId, [...formats]],
      "ckpt_list_file_facts",
    );
  }

  async listCheckpointFilesWithFacts(jobId: string, checkpointId: string): Promise<{ file: FileRecord; facts: FileFactsRecord | null }[]> {
    const FILE_F = `f.job_id AS "jobId", f.seq, f.node_rank AS "nodeRank", f.relative_name AS "relativeName",
      f.size_bytes AS "sizeBytes", f.sha256, f.last_modified AS "lastModified", f.created_at AS "createdAt"`;
    const rows = await this.rows<FileRecord & { format: string | null; error: string | null; parameterCount: number | null; tensorCount: number | null; summary: string | null }>(
      `SELECT ${FILE_F}, x.format, x.error, x.parameter_count AS "parameterCount", x.tensor_count AS "tensorCount", x.summary
       FROM checkpoint_files f LEFT JOIN file_facts x
         ON x.job_id = f.job_id AND x.node_rank = f.node_rank AND x.relative_name = f.relative_name
       WHERE f.job_id = $1 AND (CASE WHEN $2::boolean THEN strpos(f.relative_name, '/') = 0
                                ELSE f.relative_name COLLATE "C" > $3 AND f.relative_name COLLATE "C" < $4 END)
       ORDER BY f.node_rank, f.relative_name COLLATE "C"`,
      [jobId, checkpointId === ".", `${checkpointId}/`, `${checkpointId}0`],
      "ckpt_checkpoint_files_with_facts",
    );
    return rows.map(({ format, error, parameterCount, tensorCount, summary, ...file }) => ({
      file,
      facts:
        format === null
          ? null
          : { nodeRank: file.nodeRank, relativeName: file.relativeName, format: format as FileFactsRecord["format"], error, parameterCount, tensorCount: tensorCount ?? 0, summary: summary ?? "{}" },
    }));
  }

  async factsDetail(jobId: string, nodeRank: number, relativeName: string): Promise<string | null> {
    const [row] = await this.rows<{ detail: string | null }>(
      "SELECT detail FROM file_facts WHERE job_id = $1 AND node_rank = $2 AND relative_name = $3",
      [jobId, nodeRank, relativeName],
      "ckpt_facts_detail",
    );
    return row?.detail ?? null;
  }

  async createUpload(u: Omit<UploadRecord, "createdAt">): Promise<UploadRecord> {
    const [row] = await this.rows<UploadRecord>(
      `INSERT INTO uploads (upload_id, org_id, project_id, job_id, node_rank, relative_name, size_bytes, sha256,
                            part_size_bytes, part_count, backend_upload_id, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, ${NOW}, $12) RETURNING ${UPLOAD}`,
      [u.uploadId, u.orgId, u.projectId, u.jobId, u.nodeRank, u.relativeName, u.sizeBytes, u.sha256,
       u.partSizeBytes, u.partCount, u.backendUploadId, u.expiresAt],
    );
    return row!;
  }

  async getUpload(orgId: string, jobId: string, uploadId: string): Promise<UploadRecord | null> {
    const [row] = await this.rows<UploadRecord>(
      `SELECT ${UPLOAD} FROM uploads WHERE org_id = $1 AND job_id = $2 AND upload_id = $3`,
      [orgId, jobId, uploadId],
      "ckpt_get_upload",
    );
    return row ?? null;
  }

  async getUploadById(uploadId: string): Promise<UploadRecord | null> {
    const [row] = await this.rows<UploadRecord>(`SELECT ${UPLOAD} FROM uploads WHERE upload_id = $1`, [uploadId], "ckpt_get_upload_by_id");
    return row ?? null;
  }

  async deleteUpload(uploadId: string): Promise<boolean> {
    return (await this.rows("DELETE FROM uploads WHERE upload_id = $1 RETURNING upload_id", [uploadId])).length > 0;
  }

  async listExpiredUploads(now: string): Promise<UploadRecord[]> {
    return this.rows<UploadRecord>(`SELECT ${UPLOAD} FROM uploads WHERE expires_at < $1 ORDER BY expires_at`, [now]);
  }

  // --- Training logs ----------------------------------------------------------------------------

  async appendLogLines(jobId: string, lines: NewLogLine[], maxLinesPerJob: number): Promise<{ stored: number } | "job-gone"> {
    return inTransaction(this.pool, async (db) => {
      // FOR SHARE: a purge (FOR UPDATE) waits for this batch, and a batch waits for a purge.
      const job = await db.query(`SELECT 1 FROM jobs WHERE id = $1 AND ${LIVE} FOR SHARE`, [jobId]);
      if (job.rowCount === 0) return "job-gone" as const;
      // Reserves this batch's positions; concurrent batches of one job get disjoint ranges.
      const reserved = await db.query<{ next_seq: number }>(
        `INSERT INTO job_log_state (job_id, next_seq) VALUES ($1, $2)
         ON CONFLICT (job_id) DO UPDATE SET next_seq = job_log_state.next_seq + $2
         RETURNING next_seq`,
        [jobId, lines.length],
      );
      const end = reserved.rows[0]!.next_seq;
      const first = end - lines.length;
      if (lines.length > 0) {
        await db.query(
          `INSERT INTO job_log_lines (job_id, seq, ts_ns, node_rank, stream, level, message)
           SELECT $1, $2::bigint + ord - 1, ts, rank, stream, level, message
           FROM unnest($3::bigint[], $4::integer[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY
             AS l(ts, rank, stream, level, message, ord)`,
          [
            jobId,
            first,
            lines.map((l) => l.timestampNs),
            lines.map((l) => l.nodeRank),
            lines.map((l) => l.stream),
            lines.map((l) => l.level),
            lines.map((l) => l.message),
          ],
        );
      }
      if (end > maxLinesPerJob) await db.query("DELETE FROM job_log_lines WHERE job_id = $1 AND seq < $2", [jobId, end - maxLinesPerJob]);
      return { stored: lines.length };
    });
  }

  async queryLogLines(query: LogQuery): Promise<LogLineRecord[]> {
    const order = query.direction === "asc" ? "ASC" : "DESC";
    const params: unknown[] = [query.jobId, query.fromNs.toString(), query.untilNs.toString(), query.limit];
    let levelFilter = "";
    if (query.levels !== null) {
      params.push(query.levels);
      levelFilter = "AND level = ANY($5::text[])";
    }
    const { rows } = await this.pool.query<{ seq: number; ts: string; nodeRank: number; stream: string; level: string | null; message: string }>(
      `SELECT seq, ts_ns::text AS ts, node_rank AS "nodeRank", stream, level, message FROM job_log_lines
       WHERE job_id = $1 AND ts_ns >= $2::bigint AND ts_ns < $3::bigint ${levelFilter}
       ORDER BY ts_ns ${order}, seq ${order} LIMIT $4`,
      params,
    );
    return rows.map((r) => ({
      seq: r.seq,
      timestampNs: r.ts,
      nodeRank: r.nodeRank,
      stream: r.stream as LogStream,
      level: r.level as LogLevel | null,
      message: r.message,
    }));
  }

  // --- Operations -----------------------------------------------------------------------------

  async ping(): Promise<void> {
    await this.pool.query("SELECT 1");
  }

  poolStats(): { total: number; idle: number; waiting: number } {
    return { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount };
  }

  async appendAudit(entry: NewAuditEntry): Promise<AuditEntry> {
    const [row] = await this.rows<{ id: string; at: string }>(
      `INSERT INTO audit_log (at, action, key_id, actor, org_id, subject, details)
       VALUES (${NOW}, $1, $2, $3, $4, $5, $6) RETURNING id::text AS id, at`,
      [entry.action, entry.keyId, entry.actor, entry.orgId, entry.subject, JSON.stringify(entry.details)],
    );
    return { ...entry, id: Number(row!.id), at: row!.at };
  }

  async listAudit(query: { since?: string; limit?: number }): Promise<AuditEntry[]> {
    const rows = await this.rows<Omit<AuditEntry, "id"> & { id: string }>(
      `SELECT id::text AS id, at, action, key_id AS "keyId", actor, org_id AS "orgId", subject, details
       FROM audit_log WHERE ($1::timestamptz IS NULL OR at >= $1::timestamptz) ORDER BY id LIMIT $2`,
      [query.since ?? null, query.limit ?? null],
    );
    return rows.map((r) => ({ ...r, id: Number(r.id) }));
  }
}
