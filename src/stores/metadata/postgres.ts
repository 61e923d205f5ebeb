import { ancestorsOf } from "../../domain/names.js";
import type { FileFactsRecord, StoredFacts } from "../../domain/file-facts.js";
import pg from "pg";
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
              size_bytes AS "sizeBytes", sha256, last_modified AS "lastModified", created_at AS "createdAt",
              blob_key AS "blobKey"`;
const UPLOAD = `upload_id AS "uploadId", org_id AS "orgId", project_id AS "projectId", job_id AS "jobId",
                node_rank AS "nodeRank", relative_name AS "relativeName", size_bytes AS "sizeBytes", sha256,
                part_size_bytes AS "partSizeBytes", part_count AS "partCount", backend_upload_id AS "backendUploadId",
                created_at AS "createdAt", expires_at AS "expiresAt"`;
const CHECKPOINT = `checkpoint_id AS "checkpointId", size_bytes AS "sizeBytes", file_count AS "fileCount",
                    created_at AS "createdAt", last_modified AS "lastModified", has_adapter_config AS "hasAdapterConfig",
                    state, completed_at AS "completedAt", completed_by AS "completedBy", pinned,
                    trainer_state AS "trainerState", requirements_pending AS "requirementsPending", has_index AS "hasIndex"`;
const ALIAS = `project_id AS "projectId", name, job_id AS "jobId", checkpoint_id AS "checkpointId", updated_at AS "updatedAt"`;
const LIVE = "deleted_at IS NULL";
const FACTS = `node_rank AS "nodeRank", relative_name AS "relativeName", format, error,
               parameter_count AS "parameterCount", tensor_count AS "tensorCount", summary`;
const LIVE_CHECKPOINT = "deleting_at IS NULL AND file_count > 0";

const isAdapterConfig = (relativeName: string) => {
  const inside = nameInCheckpoint(relativeName);
  return inside !== null && (inside === "adapter_config.json" || inside.endsWith("/adapter_config.json"));
};

/** Every change to a job's checkpoints takes the job's row lock first, as commits do: one order, no deadlock. */
async function lockLiveJob(db: pg.PoolClient, jobId: string): Promise<boolean> {
  const job = await db.query({ name: "ckpt_lock_live_job", text: `SELECT 1 FROM jobs WHERE id = $1 AND ${LIVE} FOR UPDATE`, values: [jobId] });
  return (job.rowCount ?? 0) > 0;
}
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

  async getJobById(jobId: string): Promise<JobRecord | null> {
    const [row] = await this.rows<JobRecord>(`SELECT ${JOB} FROM jobs WHERE id = $1 AND ${LIVE}`, [jobId], "ckpt_get_job_by_id");
    return row ?? null;
  }

  async orgOfProject(projectId: string): Promise<string | null> {
    const [row] = await this.rows<{ orgId: string }>(`SELECT org_id AS "orgId" FROM projects WHERE id = $1 AND ${LIVE}`, [projectId]);
    return row?.orgId ?? null;
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
      await db.query("DELETE FROM blob_writes WHERE job_id = $1", [jobId]);
      await db.query("DELETE FROM job_log_lines WHERE job_id = $1", [jobId]);
      await db.query("DELETE FROM job_log_state WHERE job_id = $1", [jobId]);
      for (const table of ["checkpoints", "checkpoint_ranks", "checkpoint_requirements", "checkpoint_aliases"])
        await db.query(`DELETE FROM ${table} WHERE job_id = $1`, [jobId]);
      await db.query("DELETE FROM jobs WHERE id = $1", [jobId]);
    });
  }

  async purgeDeletedProjects(): Promise<void> {
    for (const table of ["retention_policies", "checkpoint_aliases", "checkpoint_alias_history"])
      await this.pool.query(
        `DELETE FROM ${table} WHERE project_id IN (SELECT id FROM projects WHERE deleted_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.project_id = projects.id))`,
      );
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
    blobKey?: string | null;
    maxFilesPerJob?: number;
    facts?: StoredFacts | null;
  }): Promise<CommittedFile | "job-gone" | "too-many-files" | "checkpoint-deleting" | "path-conflict"> {
    const blobKey = file.blobKey ?? null;
    const recordFacts = async (db: pg.PoolClient, checkpointId: string | null) => {
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
          values: [file.jobId, file.nodeRank, file.relativeName, checkpointId, x.format, x.error, x.parameterCount, x.tensorCount, x.summary, x.detail],
        });
    };
    type Result = CommittedFile | "job-gone" | "too-many-files" | "checkpoint-deleting" | "path-conflict";
    return inTransaction(this.pool, async (db): Promise<Result> => {
      // The job row lock serialises commits to one job across every server: whoever holds it
      // reads the current counters, so positions are unique and each name is inserted once.
      const job = await db.query<{ fileCount: number; nextSeq: number }>({
        name: "ckpt_lock_job_seq",
        text: `SELECT file_count AS "fileCount", next_seq AS "nextSeq" FROM jobs WHERE id = $1 AND ${LIVE} FOR UPDATE`,
        values: [file.jobId],
      });
      const counters = job.rows[0];
      if (counters === undefined) return "job-gone";
      const checkpointId = checkpointIdOf(file.relativeName);
      const checkpoint =
        checkpointId === null
          ? undefined
          : (
              await db.query<{ state: CheckpointState; deleting: boolean }>({
                name: "ckpt_checkpoint_row",
                text: `SELECT state, deleting_at IS NOT NULL AS deleting FROM checkpoints WHERE job_id = $1 AND checkpoint_id = $2`,
                values: [file.jobId, checkpointId],
              })
            ).rows[0];
      if (checkpoint?.deleting) return "checkpoint-deleting";

      const previous = (
        await db.query<FileRecord>({
          name: "ckpt_previous_file_v15",
          text: `SELECT ${FILE} FROM checkpoint_files WHERE job_id = $1 AND node_rank = $2 AND relative_name = $3`,
          values: [file.jobId, file.nodeRank, file.relativeName],
        })
      ).rows[0];
      // Under the job's row lock, so a file and a folder of one name cannot both get in.
      if (!previous && (await pathConflictOn(db, file.jobId, file.nodeRank, file.relativeName)) !== null) return "path-conflict";
      if (blobKey !== null) await db.query({ name: "ckpt_end_blob_write", text: "DELETE FROM blob_writes WHERE blob_key = $1", values: [blobKey] });
      let record: FileRecord;
      if (previous) {
        // A replacement keeps its position (and createdAt).
        const replaced = await db.query<FileRecord>({
          name: "ckpt_replace_file_v15",
          text: `WITH f AS (
                   UPDATE checkpoint_files SET size_bytes = $4, sha256 = $5, last_modified = ${NOW}, blob_key = $6
                   WHERE job_id = $1 AND node_rank = $2 AND relative_name = $3
                   RETURNING ${FILE}
                 ), touched AS (
                   UPDATE jobs SET updated_at = ${NOW} WHERE id = $1 AND EXISTS (SELECT 1 FROM f)
                 )
                 SELECT * FROM f`,
          values: [file.jobId, file.nodeRank, file.relativeName, file.sizeBytes, file.sha256, blobKey],
        });
        record = replaced.rows[0]!;
      } else {
        if (file.maxFilesPerJob !== undefined && counters.fileCount >= file.maxFilesPerJob) return "too-many-files";
        const inserted = await db.query<FileRecord>({
          name: "ckpt_insert_file_seq_v15",
          text: `WITH f AS (
                   INSERT INTO checkpoint_files
                     (job_id, seq, node_rank, relative_name, size_bytes, sha256, last_modified, created_at, blob_key)
                   VALUES ($1, $2, $3, $4, $5, $6, ${NOW}, ${NOW}, $7)
                   RETURNING ${FILE}
                 ), counted AS (
                   UPDATE jobs SET file_count = file_count + 1, next_seq = next_seq + 1, updated_at = ${NOW} WHERE id = $1
                 )
                 SELECT * FROM f`,
          values: [file.jobId, counters.nextSeq, file.nodeRank, file.relativeName, file.sizeBytes, file.sha256, blobKey],
        });
        record = inserted.rows[0]!;
      }
      await recordFacts(db, checkpointId);
      if (checkpointId !== null) {
        await db.query({
          name: "ckpt_grow_checkpoint",
          text: `INSERT INTO checkpoints (job_id, checkpoint_id, size_bytes, file_count, first_seq, created_at, last_modified, has_adapter_config)
                 VALUES ($1, $2, $3, 1, $4, ${NOW}, ${NOW}, $5)
                 ON CONFLICT (job_id, checkpoint_id) DO UPDATE SET
                   size_bytes = checkpoints.size_bytes + $3 - $6, file_count = checkpoints.file_count + $7,
                   last_modified = ${NOW}, has_adapter_config = checkpoints.has_adapter_config OR $5`,
          values: [file.jobId, checkpointId, file.sizeBytes, record.seq, isAdapterConfig(file.relativeName), previous?.sizeBytes ?? 0, previous ? 0 : 1],
        });
        await db.query({
          name: "ckpt_add_rank",
          text: "INSERT INTO checkpoint_ranks (job_id, checkpoint_id, node_rank) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
          values: [file.jobId, checkpointId, file.nodeRank],
        });
        const unmet = await db.query({
          name: "ckpt_unmeet_requirement",
          text: `UPDATE checkpoint_requirements SET met = false WHERE job_id = $1 AND node_rank = $2 AND relative_name = $3 AND met`,
          values: [file.jobId, file.nodeRank, file.relativeName],
        });
        if ((unmet.rowCount ?? 0) > 0)
          await db.query("UPDATE checkpoints SET requirements_pending = requirements_pending + 1 WHERE job_id = $1 AND checkpoint_id = $2", [file.jobId, checkpointId]);
        const change = stateAfterCommit({
          current: checkpoint?.state ?? "WRITING",
          isMarker: isCompletionMarker(file.relativeName),
          replacedWithDifferentBytes:
            previous !== undefined && (previous.sizeBytes !== file.sizeBytes || previous.sha256 === null || previous.sha256 !== file.sha256),
        });
        if (change) await setState(db, file.jobId, checkpointId, change);
      }
      return { file: record, replaced: previous ?? null };
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
    return pathConflictOn(this.pool, jobId, nodeRank, relativeName);
  }

  async beginBlobWrite(blobKey: string, jobId: string): Promise<void> {
    await this.rows(
      `INSERT INTO blob_writes (blob_key, job_id, started_at) VALUES ($1, $2, ${NOW})
       ON CONFLICT (blob_key) DO UPDATE SET started_at = excluded.started_at`,
      [blobKey, jobId],
      "ckpt_begin_blob_write",
    );
  }

  async endBlobWrite(blobKey: string): Promise<void> {
    await this.rows("DELETE FROM blob_writes WHERE blob_key = $1", [blobKey], "ckpt_end_blob_write");
  }

  /** Two queries per batch, each one index probe per key (blob_key's index; the name's unique key). */
  async referencedBlobKeys(refs: readonly BlobKeyRef[], writesSince: string): Promise<Set<string>> {
    const referenced = new Set<string>();
    const versioned = refs.filter((r) => !r.legacy).map((r) => r.key);
    if (versioned.length > 0)
      for (const { key } of await this.rows<{ key: string }>(
        `SELECT blob_key AS key FROM checkpoint_files WHERE blob_key = ANY($1::text[])
         UNION SELECT blob_key FROM blob_writes WHERE blob_key = ANY($1::text[]) AND started_at >= $2::timestamptz`,
        [versioned, writesSince],
        "ckpt_referenced_versioned",
      ))
        referenced.add(key);
    const legacy = refs.filter((r) => r.legacy);
    if (legacy.length > 0)
      for (const { key } of await this.rows<{ key: string }>(
        `SELECT q.key FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) AS q(key, job_id, node_rank, relative_name)
         WHERE EXISTS (SELECT 1 FROM checkpoint_files f WHERE f.job_id = q.job_id AND f.node_rank = q.node_rank
                         AND f.relative_name = q.relative_name AND f.blob_key IS NULL)`,
        [legacy.map((r) => r.key), legacy.map((r) => r.jobId), legacy.map((r) => r.nodeRank), legacy.map((r) => r.relativeName)],
        "ckpt_referenced_legacy",
      ))
        referenced.add(key);
    return referenced;
  }

  async summarizeCheckpoints(jobId: string): Promise<CheckpointSummary[]> {
    return this.rows<CheckpointSummary>(
      `SELECT ${CHECKPOINT} FROM checkpoints WHERE job_id = $1 AND ${LIVE_CHECKPOINT} ORDER BY first_seq`,
      [jobId],
      "ckpt_summarize_checkpoints",
    );
  }

  async getCheckpoint(jobId: string, checkpointId: string): Promise<CheckpointSummary | null> {
    const [row] = await this.rows<CheckpointSummary>(
      `SELECT ${CHECKPOINT} FROM checkpoints WHERE job_id = $1 AND checkpoint_id = $2 AND ${LIVE_CHECKPOINT}
         AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND ${LIVE})`,
      [jobId, checkpointId],
      "ckpt_get_checkpoint",
    );
    return row ?? null;
  }

  async completeCheckpoint(jobId: string, checkpointId: string, reason: CompletionReason): Promise<CheckpointSummary | null> {
    await inTransaction(this.pool, async (db) => {
      if (!(await lockLiveJob(db, jobId))) return;
      await db.query(
        `UPDATE checkpoints SET state = 'COMPLETE', completed_at = ${NOW}, completed_by = $3
         WHERE job_id = $1 AND checkpoint_id = $2 AND state <> 'COMPLETE' AND ${LIVE_CHECKPOINT}`,
        [jobId, checkpointId, reason],
      );
    });
    return this.getCheckpoint(jobId, checkpointId);
  }

  async settleCheckpoints(jobId: string, change: StateChange, except: readonly string[]): Promise<string[]> {
    return inTransaction(this.pool, async (db) => {
      if (!(await lockLiveJob(db, jobId))) return [];
      const changed = await db.query<{ id: string }>(
        `UPDATE checkpoints SET state = $2, completed_at = CASE WHEN $3::text IS NULL THEN NULL ELSE ${NOW} END, completed_by = $3
         WHERE job_id = $1 AND state = 'WRITING' AND deleting_at IS NULL AND NOT (checkpoint_id = ANY($4::text[]))
         RETURNING checkpoint_id AS id`,
        [jobId, change.state, change.completedBy, [...except]],
      );
      return changed.rows.map((r) => r.id);
    });
  }

  async setPinned(jobId: string, checkpointId: string, pinned: boolean): Promise<CheckpointSummary | null> {
    await inTransaction(this.pool, async (db) => {
      if (!(await lockLiveJob(db, jobId))) return;
      await db.query(`UPDATE checkpoints SET pinned = $3 WHERE job_id = $1 AND checkpoint_id = $2 AND ${LIVE_CHECKPOINT}`, [jobId, checkpointId, pinned]);
    });
    return this.getCheckpoint(jobId, checkpointId);
  }

  async setTrainerState(jobId: string, checkpointId: string, summary: TrainerStateSummary): Promise<void> {
    await this.pool.query("UPDATE checkpoints SET trainer_state = $3 WHERE job_id = $1 AND checkpoint_id = $2", [jobId, checkpointId, JSON.stringify(summary)]);
  }

  async setRequirements(jobId: string, checkpointId: string, nodeRank: number, relativeNames: readonly string[]): Promise<{ relativeName: string; sizeBytes: number }[]> {
    return inTransaction(this.pool, async (db) => {
      if (!(await lockLiveJob(db, jobId))) return [];
      await db.query("DELETE FROM checkpoint_requirements WHERE job_id = $1 AND checkpoint_id = $2 AND node_rank = $3", [jobId, checkpointId, nodeRank]);
      await db.query(
        `INSERT INTO checkpoint_requirements (job_id, checkpoint_id, node_rank, relative_name, met)
         SELECT $1, $2, $3, name, false FROM unnest($4::text[]) AS name
         ON CONFLICT (job_id, node_rank, relative_name) DO UPDATE SET checkpoint_id = EXCLUDED.checkpoint_id, met = false`,
        [jobId, checkpointId, nodeRank, [...relativeNames]],
      );
      await updatePending(db, jobId, checkpointId);
      const present = await db.query<{ relativeName: string; sizeBytes: number }>(
        `SELECT relative_name AS "relativeName", size_bytes AS "sizeBytes" FROM checkpoint_files
         WHERE job_id = $1 AND node_rank = $2 AND relative_name = ANY($3::text[])`,
        [jobId, nodeRank, [...relativeNames]],
      );
      return present.rows;
    });
  }

  async meetRequirement(jobId: string, nodeRank: number, relativeName: string, sizeBytes: number): Promise<CheckpointSummary | null> {
    const checkpointId = await inTransaction(this.pool, async (db) => {
      if (!(await lockLiveJob(db, jobId))) return null;
      const [requirement] = (
        await db.query<{ checkpointId: string; met: boolean }>(
          `SELECT checkpoint_id AS "checkpointId", met FROM checkpoint_requirements WHERE job_id = $1 AND node_rank = $2 AND relative_name = $3`,
          [jobId, nodeRank, relativeName],
        )
      ).rows;
      if (!requirement) return null;
      const met = await db.query(
        `UPDATE checkpoint_requirements r SET met = true WHERE r.job_id = $1 AND r.node_rank = $2 AND r.relative_name = $3 AND NOT r.met
           AND EXISTS (SELECT 1 FROM checkpoint_files f WHERE f.job_id = $1 AND f.node_rank = $2 AND f.relative_name = $3 AND f.size_bytes = $4)`,
        [jobId, nodeRank, relativeName, sizeBytes],
      );
      if ((met.rowCount ?? 0) > 0 && (await updatePending(db, jobId, requirement.checkpointId)) === 0)
        await db.query(
          `UPDATE checkpoints SET state = 'COMPLETE', completed_at = ${NOW}, completed_by = 'safetensors-index'
           WHERE job_id = $1 AND checkpoint_id = $2 AND state <> 'COMPLETE' AND deleting_at IS NULL`,
          [jobId, requirement.checkpointId],
        );
      return requirement.checkpointId;
    });
    return checkpointId === null ? null : this.getCheckpoint(jobId, checkpointId);
  }

  async openUploadNames(jobId: string): Promise<string[]> {
    return (await this.rows<{ name: string }>("SELECT relative_name AS name FROM uploads WHERE job_id = $1", [jobId])).map((r) => r.name);
  }

  async beginCheckpointDelete(jobId: string, checkpointId: string): Promise<{ nodeRanks: number[] } | null> {
    return inTransaction(this.pool, async (db) => {
      if (!(await lockLiveJob(db, jobId))) return null;
      const marked = await db.query(
        `UPDATE checkpoints c SET deleting_at = ${NOW} WHERE c.job_id = $1 AND c.checkpoint_id = $2 AND c.deleting_at IS NULL
           AND c.state <> 'WRITING' AND NOT c.pinned
           AND NOT EXISTS (SELECT 1 FROM checkpoint_aliases a WHERE a.job_id = c.job_id AND a.checkpoint_id = c.checkpoint_id)`,
        [jobId, checkpointId],
      );
      if ((marked.rowCount ?? 0) === 0) return null;
      const nodeRanks = await ranksOf(db, jobId, checkpointId);
      let unlisted = 0;
      // Byte order ("C" collation, served by the index of migration 2): names inside folder C sort between "C/" and "C0".
      for (const rank of nodeRanks) {
        const removed = await db.query(
          `DELETE FROM checkpoint_files WHERE job_id = $1 AND node_rank = $2 AND relative_name COLLATE "C" > $3 AND relative_name COLLATE "C" < $4`,
          [jobId, rank, `${checkpointId}/`, `${checkpointId}0`],
        );
        unlisted += removed.rowCount ?? 0;
      }
      await db.query(`UPDATE jobs SET file_count = file_count - $2, updated_at = ${NOW} WHERE id = $1`, [jobId, unlisted]);
      return { nodeRanks };
    });
  }

  async finishCheckpointDelete(jobId: string, checkpointId: string): Promise<void> {
    await inTransaction(this.pool, async (db) => {
      const gone = await db.query("DELETE FROM checkpoints WHERE job_id = $1 AND checkpoint_id = $2 AND deleting_at IS NOT NULL", [jobId, checkpointId]);
      if ((gone.rowCount ?? 0) === 0) return;
      await db.query("DELETE FROM checkpoint_ranks WHERE job_id = $1 AND checkpoint_id = $2", [jobId, checkpointId]);
      await db.query("DELETE FROM checkpoint_requirements WHERE job_id = $1 AND checkpoint_id = $2", [jobId, checkpointId]);
    });
  }

  async checkpointDeletesPending(): Promise<CheckpointDeletion[]> {
    const rows = await this.rows<{ projectId: string; jobId: string; checkpointId: string; nodeRanks: number[] }>(
      `SELECT j.project_id AS "projectId", c.job_id AS "jobId", c.checkpoint_id AS "checkpointId",
              ARRAY(SELECT r.node_rank FROM checkpoint_ranks r WHERE r.job_id = c.job_id AND r.checkpoint_id = c.checkpoint_id ORDER BY 1) AS "nodeRanks"
       FROM checkpoints c JOIN jobs j ON j.id = c.job_id WHERE c.deleting_at IS NOT NULL ORDER BY c.deleting_at`,
      [],
    );
    return rows;
  }

  async setAlias(projectId: string, name: string, jobId: string, checkpointId: string): Promise<AliasRecord | "checkpoint-gone"> {
    return inTransaction(this.pool, async (db): Promise<AliasRecord | "checkpoint-gone"> => {
      if (!(await lockLiveJob(db, jobId))) return "checkpoint-gone";
      const target = await db.query(
        `SELECT 1 FROM checkpoints c JOIN jobs j ON j.id = c.job_id
         WHERE c.job_id = $1 AND c.checkpoint_id = $2 AND j.project_id = $3 AND c.deleting_at IS NULL AND c.file_count > 0`,
        [jobId, checkpointId, projectId],
      );
      if ((target.rowCount ?? 0) === 0) return "checkpoint-gone";
      // Moves of one alias are serialised by its row (or, for a new alias, the history's key).
      const [current] = (await db.query<AliasRecord>(`SELECT ${ALIAS} FROM checkpoint_aliases WHERE project_id = $1 AND name = $2 FOR UPDATE`, [projectId, name])).rows;
      if (current && current.jobId === jobId && current.checkpointId === checkpointId) return current;
      const [row] = (
        await db.query<AliasRecord>(
          `INSERT INTO checkpoint_aliases (project_id, name, job_id, checkpoint_id, updated_at) VALUES ($1, $2, $3, $4, ${NOW})
           ON CONFLICT (project_id, name) DO UPDATE SET job_id = EXCLUDED.job_id, checkpoint_id = EXCLUDED.checkpoint_id, updated_at = EXCLUDED.updated_at
           RETURNING ${ALIAS}`,
          [projectId, name, jobId, checkpointId],
        )
      ).rows;
      await recordAliasMove(db, projectId, name, jobId, checkpointId);
      return row!;
    });
  }

  async removeAlias(projectId: string, name: string): Promise<boolean> {
    return inTransaction(this.pool, async (db) => {
      const gone = await db.query("DELETE FROM checkpoint_aliases WHERE project_id = $1 AND name = $2", [projectId, name]);
      if ((gone.rowCount ?? 0) === 0) return false;
      await recordAliasMove(db, projectId, name, null, null);
      return true;
    });
  }

  async listAliases(projectId: string): Promise<AliasRecord[]> {
    return this.rows<AliasRecord>(`SELECT ${ALIAS} FROM checkpoint_aliases WHERE project_id = $1 ORDER BY name COLLATE "C"`, [projectId]);
  }

  async getAlias(projectId: string, name: string): Promise<AliasRecord | null> {
    const [row] = await this.rows<AliasRecord>(`SELECT ${ALIAS} FROM checkpoint_aliases WHERE project_id = $1 AND name = $2`, [projectId, name]);
    return row ?? null;
  }

  async aliasHistory(projectId: string, name: string): Promise<AliasHistoryEntry[]> {
    return this.rows<AliasHistoryEntry>(
      `SELECT name, version, job_id AS "jobId", checkpoint_id AS "checkpointId", changed_at AS "changedAt"
       FROM checkpoint_alias_history WHERE project_id = $1 AND name = $2 ORDER BY version`,
      [projectId, name],
    );
  }

  async getRetentionPolicy(projectId: string): Promise<RetentionPolicy | null> {
    const [row] = await this.rows<{ policy: RetentionPolicy }>("SELECT policy FROM retention_policies WHERE project_id = $1", [projectId]);
    return row?.policy ?? null;
  }

  async putRetentionPolicy(projectId: string, policy: RetentionPolicy): Promise<void> {
    await this.pool.query(
      `INSERT INTO retention_policies (project_id, policy, updated_at) VALUES ($1, $2, ${NOW})
       ON CONFLICT (project_id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = EXCLUDED.updated_at`,
      [projectId, JSON.stringify(policy)],
    );
  }

  async listFileFacts(jobId: string, formats: readonly string[]): Promise<(FileFactsRecord & { checkpointId: string | null })[]> {
    if (formats.length === 0) return [];
    return this.rows<FileFactsRecord & { checkpointId: string | null }>(
      `SELECT ${FACTS}, checkpoint_id AS "checkpointId" FROM file_facts
       WHERE job_id = $1 AND format = ANY($2::text[]) ORDER BY node_rank, relative_name COLLATE "C"`,
      [jobId, [...formats]],
      "ckpt_list_file_facts",
    );
  }

  async listCheckpointFilesWithFacts(jobId: string, checkpointId: string): Promise<{ file: FileRecord; facts: FileFactsRecord | null }[]> {
    const FILE_F = `f.job_id AS "jobId", f.seq, f.node_rank AS "nodeRank", f.relative_name AS "relativeName",
      f.size_bytes AS "sizeBytes", f.sha256, f.last_modified AS "lastModified", f.created_at AS "createdAt", f.blob_key AS "blobKey"`;
    const rows = await this.rows<FileRecord & { format: string | null; error: string | null; parameterCount: number | null; tensorCount: number | null; summary: string | null }>(
      `SELECT ${FILE_F}, x.format, x.error, x.parameter_count AS "parameterCount", x.tensor_count AS "tensorCount", x.summary
       FROM checkpoint_files f LEFT JOIN file_facts x
         ON x.job_id = f.job_id AND x.node_rank = f.node_rank AND x.relative_name = f.relative_name
       WHERE f.job_id = $1 AND f.relative_name COLLATE "C" > $2 AND f.relative_name COLLATE "C" < $3
       ORDER BY f.node_rank, f.relative_name COLLATE "C"`,
      [jobId, `${checkpointId}/`, `${checkpointId}0`],
      "ckpt_checkpoint_files_with_facts_v15",
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

async function setState(db: pg.PoolClient, jobId: string, checkpointId: string, change: StateChange): Promise<void> {
  await db.query({
    name: "ckpt_set_checkpoint_state",
    text: `UPDATE checkpoints SET state = $3, completed_at = CASE WHEN $4::text IS NULL THEN NULL ELSE ${NOW} END, completed_by = $4
           WHERE job_id = $1 AND checkpoint_id = $2`,
    values: [jobId, checkpointId, change.state, change.completedBy],
  });
}

/** Recounts the unmet shards of a checkpoint (bounded by its index, not by the job's files). */
async function updatePending(db: pg.PoolClient, jobId: string, checkpointId: string): Promise<number> {
  const [row] = (
    await db.query<{ n: number }>(
      `UPDATE checkpoints SET has_index = true, requirements_pending =
         (SELECT COUNT(*) FROM checkpoint_requirements WHERE job_id = $1 AND checkpoint_id = $2 AND NOT met)
       WHERE job_id = $1 AND checkpoint_id = $2 RETURNING requirements_pending AS n`,
      [jobId, checkpointId],
    )
  ).rows;
  return row?.n ?? 0;
}

async function ranksOf(db: pg.PoolClient, jobId: string, checkpointId: string): Promise<number[]> {
  const rows = await db.query<{ rank: number }>(
    "SELECT node_rank AS rank FROM checkpoint_ranks WHERE job_id = $1 AND checkpoint_id = $2 ORDER BY node_rank",
    [jobId, checkpointId],
  );
  return rows.rows.map((r) => r.rank);
}

async function recordAliasMove(db: pg.PoolClient, projectId: string, name: string, jobId: string | null, checkpointId: string | null): Promise<void> {
  // The history's primary key makes two concurrent first moves of one name conflict rather than share a version.
  await db.query(
    `INSERT INTO checkpoint_alias_history (project_id, name, version, job_id, checkpoint_id, changed_at)
     SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, ${NOW} FROM checkpoint_alias_history WHERE project_id = $1 AND name = $2`,
    [projectId, name, jobId, checkpointId],
  );
}

/** A file of the rank that `relativeName` cannot coexist with on a filesystem (see MetadataStore.findPathConflict). */
async function pathConflictOn(db: pg.Pool | pg.PoolClient, jobId: string, nodeRank: number, relativeName: string): Promise<string | null> {
  const ancestors = ancestorsOf(relativeName);
  if (ancestors.length > 0) {
    const [hit] = (
      await db.query<{ name: string }>({
        name: "ckpt_conflict_ancestor",
        text: "SELECT relative_name AS name FROM checkpoint_files WHERE job_id = $1 AND node_rank = $2 AND relative_name = ANY($3::text[]) LIMIT 1",
        values: [jobId, nodeRank, ancestors],
      })
    ).rows;
    if (hit) return hit.name;
  }
  // Byte order ("C" collation, served by the index of migration 2): names inside folder N sort
  // between "N/" and "N0".
  const [inside] = (
    await db.query<{ name: string }>({
      name: "ckpt_conflict_inside",
      text: `SELECT relative_name AS name FROM checkpoint_files
             WHERE job_id = $1 AND node_rank = $2 AND relative_name COLLATE "C" > $3 AND relative_name COLLATE "C" < $4 LIMIT 1`,
      values: [jobId, nodeRank, `${relativeName}/`, `${relativeName}0`],
    })
  ).rows;
  return inside?.name ?? null;
}
