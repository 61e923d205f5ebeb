import type pg from "pg";
import { inTransaction } from "./postgres-transaction.js";

/**
 * Versioned, append-only: never edit a shipped migration, add the next one. The schema mirrors
 * sqlite-migrations.ts; where it differs, the comment says why.
 */
export const POSTGRES_MIGRATIONS: { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE organisations (
        id text PRIMARY KEY,
        name text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL
      );
      CREATE TABLE api_keys (
        key_id text PRIMARY KEY,
        org_id text NOT NULL REFERENCES organisations(id),
        secret_hash bytea NOT NULL,
        created_at timestamptz NOT NULL,
        revoked_at timestamptz
      );
      CREATE TABLE projects (
        id text PRIMARY KEY,
        org_id text NOT NULL REFERENCES organisations(id),
        name text NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        deleted_at timestamptz
      );
      -- Names are unique among live projects only: a deleted project's name can be reused.
      -- upsertProject's ON CONFLICT names this index's columns and predicate.
      CREATE UNIQUE INDEX projects_org_name ON projects (org_id, name) WHERE deleted_at IS NULL;
      CREATE INDEX projects_org_created ON projects (org_id, created_at, id);
      CREATE TABLE jobs (
        id text PRIMARY KEY,
        project_id text NOT NULL REFERENCES projects(id),
        org_id text NOT NULL REFERENCES organisations(id),
        name text,
        status text NOT NULL,
        error_message text,
        sync_status text,
        priority integer NOT NULL DEFAULT 0,
        -- json, not jsonb: the creation body is kept verbatim (jsonb would reorder its keys).
        spec json NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        file_count integer NOT NULL DEFAULT 0,
        deleted_at timestamptz,
        -- Breaks created_at ties in creation order, as SQLite's rowid does.
        created_seq bigint GENERATED ALWAYS AS IDENTITY
      );
      CREATE INDEX jobs_project_created ON jobs (project_id, created_at, created_seq);
      CREATE INDEX jobs_pending_purge ON jobs (id) WHERE deleted_at IS NOT NULL;
      CREATE TABLE checkpoint_files (
        job_id text NOT NULL REFERENCES jobs(id),
        seq integer NOT NULL,
        node_rank integer NOT NULL,
        relative_name text NOT NULL,
        size_bytes bigint NOT NULL,
        sha256 text,
        last_modified timestamptz NOT NULL,
        created_at timestamptz NOT NULL,
        -- listFiles pages are a seek on this key: WHERE job_id = $1 AND seq >= $2 ORDER BY seq.
        PRIMARY KEY (job_id, seq),
        UNIQUE (job_id, node_rank, relative_name)
      );
    `,
  },
  {
    // Byte-order index for findPathConflict's folder range scan (the default collation's order
    // is locale-dependent and cannot answer "names inside folder N" as a range).
    version: 2,
    sql: `CREATE INDEX checkpoint_files_name_c ON checkpoint_files (job_id, node_rank, relative_name COLLATE "C");`,
  },
  {
    version: 3,
    sql: `
      CREATE TABLE uploads (
        upload_id text PRIMARY KEY,
        org_id text NOT NULL,
        project_id text NOT NULL,
        job_id text NOT NULL,
        node_rank integer NOT NULL,
        relative_name text NOT NULL,
        size_bytes bigint NOT NULL,
        sha256 text,
        part_size_bytes bigint NOT NULL,
        part_count integer NOT NULL,
        backend_upload_id text,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
      );
      CREATE INDEX uploads_expires ON uploads (expires_at);
    `,
  },
  {
    // As SQLite's version 10: the owner email of keys and creator of jobs, and the search indexes
    // (created_seq is the tie-break, as in jobs_project_created).
    version: 10,
    sql: `
      ALTER TABLE api_keys ADD COLUMN owner_email text;
      ALTER TABLE jobs ADD COLUMN created_by_email text;
      CREATE INDEX jobs_org_created ON jobs (org_id, created_at, created_seq) WHERE deleted_at IS NULL;
      CREATE INDEX jobs_org_status_created ON jobs (org_id, status, created_at, created_seq) WHERE deleted_at IS NULL;
    `,
  },
  {
    // Training logs; mirrors SQLite's version 11.
    version: 11,
    sql: `
      CREATE TABLE job_log_lines (
        job_id text NOT NULL,
        seq bigint NOT NULL,
        ts_ns bigint NOT NULL,
        node_rank integer NOT NULL,
        stream text NOT NULL,
        level text,
        message text NOT NULL,
        PRIMARY KEY (job_id, seq)
      );
      CREATE INDEX job_log_lines_time ON job_log_lines (job_id, ts_ns, seq);
      CREATE TABLE job_log_state (
        job_id text PRIMARY KEY,
        next_seq bigint NOT NULL
      );
    `,
  },
  {
    // The audit log (README "Operating ckpt"): append-only, read by `ckpt admin audit`.
    version: 12,
    sql: `
      CREATE TABLE audit_log (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL,
        action text NOT NULL,
        key_id text,
        actor text NOT NULL,
        org_id text,
        subject text,
        details jsonb NOT NULL
      );
      CREATE INDEX audit_log_at ON audit_log (at);
    `,
  },
  {
    // File facts: see sqlite-migrations.ts, version 13. text, not jsonb: read whole, never queried into.
    version: 13,
    sql: `
      CREATE TABLE file_facts (
        job_id text NOT NULL,
        node_rank integer NOT NULL,
        relative_name text NOT NULL,
        checkpoint_id text,
        format text NOT NULL,
        error text,
        parameter_count bigint,
        tensor_count integer NOT NULL,
        summary text NOT NULL,
        detail text,
        PRIMARY KEY (job_id, node_rank, relative_name),
        FOREIGN KEY (job_id, node_rank, relative_name)
          REFERENCES checkpoint_files (job_id, node_rank, relative_name) ON DELETE CASCADE
      );
      CREATE INDEX file_facts_checkpoint ON file_facts (job_id, checkpoint_id);
    `,
  },
  {
    // Mirrors SQLite's migration 14 (checkpoint aggregates, aliases, pins, retention, deletes).
    version: 14,
    sql: `
      ALTER TABLE jobs ADD COLUMN next_seq integer NOT NULL DEFAULT 0;
      UPDATE jobs SET next_seq = file_count;
      CREATE TABLE checkpoints (
        job_id text NOT NULL,
        checkpoint_id text NOT NULL,
        size_bytes bigint NOT NULL,
        file_count integer NOT NULL,
        first_seq integer NOT NULL,
        created_at timestamptz NOT NULL,
        last_modified timestamptz NOT NULL,
        has_adapter_config boolean NOT NULL DEFAULT false,
        state text NOT NULL DEFAULT 'WRITING',
        completed_at timestamptz,
        completed_by text,
        pinned boolean NOT NULL DEFAULT false,
        trainer_state jsonb,
        has_index boolean NOT NULL DEFAULT false,
        requirements_pending integer NOT NULL DEFAULT 0,
        deleting_at timestamptz,
        PRIMARY KEY (job_id, checkpoint_id)
      );
      CREATE INDEX checkpoints_deleting ON checkpoints (deleting_at) WHERE deleting_at IS NOT NULL;
      CREATE TABLE checkpoint_ranks (
        job_id text NOT NULL,
        checkpoint_id text NOT NULL,
        node_rank integer NOT NULL,
        PRIMARY KEY (job_id, checkpoint_id, node_rank)
      );
      CREATE TABLE checkpoint_requirements (
        job_id text NOT NULL,
        checkpoint_id text NOT NULL,
        node_rank integer NOT NULL,
        relative_name text NOT NULL,
        met boolean NOT NULL DEFAULT false,
        PRIMARY KEY (job_id, node_rank, relative_name)
      );
      CREATE INDEX checkpoint_requirements_checkpoint ON checkpoint_requirements (job_id, checkpoint_id);
      CREATE TABLE checkpoint_aliases (
        project_id text NOT NULL,
        name text NOT NULL,
        job_id text NOT NULL,
        checkpoint_id text NOT NULL,
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (project_id, name)
      );
      CREATE INDEX checkpoint_aliases_target ON checkpoint_aliases (job_id, checkpoint_id);
      CREATE TABLE checkpoint_alias_history (
        project_id text NOT NULL,
        name text NOT NULL,
        version integer NOT NULL,
        job_id text,
        checkpoint_id text,
        changed_at timestamptz NOT NULL,
        PRIMARY KEY (project_id, name, version)
      );
      CREATE TABLE retention_policies (
        project_id text PRIMARY KEY,
        policy jsonb NOT NULL,
        updated_at timestamptz NOT NULL
      );
      INSERT INTO checkpoints (job_id, checkpoint_id, size_bytes, file_count, first_seq, created_at, last_modified, has_adapter_config, state, completed_at, completed_by)
        SELECT f.job_id, split_part(f.relative_name, '/', 1),
               SUM(f.size_bytes), COUNT(*), MIN(f.seq), MIN(f.created_at), MAX(f.last_modified),
               bool_or(right(f.relative_name, 20) = '/adapter_config.json'),
               CASE MIN(j.status) WHEN 'TRAINING_JOB_COMPLETED' THEN 'COMPLETE'
                                  WHEN 'TRAINING_JOB_FAILED' THEN 'INCOMPLETE' WHEN 'TRAINING_JOB_STOPPED' THEN 'INCOMPLETE'
                                  ELSE 'WRITING' END,
               CASE MIN(j.status) WHEN 'TRAINING_JOB_COMPLETED' THEN MIN(j.updated_at) END,
               CASE MIN(j.status) WHEN 'TRAINING_JOB_COMPLETED' THEN 'job-completed' END
        FROM checkpoint_files f JOIN jobs j ON j.id = f.job_id
        WHERE strpos(f.relative_name, '/') > 1
        GROUP BY f.job_id, split_part(f.relative_name, '/', 1);
      INSERT INTO checkpoint_ranks (job_id, checkpoint_id, node_rank)
        SELECT DISTINCT job_id, split_part(relative_name, '/', 1), node_rank
        FROM checkpoint_files WHERE strpos(relative_name, '/') > 1;
    `,
  },
  {
    // See the SQLite migration 15: per-version blob keys (NULL: the legacy key) and writes in flight.
    version: 15,
    sql: `
      ALTER TABLE checkpoint_files ADD COLUMN blob_key text;
      CREATE UNIQUE INDEX checkpoint_files_blob_key ON checkpoint_files (blob_key) WHERE blob_key IS NOT NULL;
      CREATE TABLE blob_writes (
        blob_key text PRIMARY KEY,
        job_id text NOT NULL,
        started_at timestamptz NOT NULL
      );
      CREATE INDEX blob_writes_job ON blob_writes (job_id);
    `,
  },
];

/**
 * Arbitrary but fixed key of the advisory lock that serialises migrations ("ckpt" in ASCII).
 * Every server takes it before looking at schema_migrations, so servers starting together
 * against one database apply each migration exactly once; the others wait, then find it done.
 */
const MIGRATION_LOCK_KEY = 0x636b7074;

/**
 * Applies the migrations this database lacks, in one transaction that holds the advisory lock
 * (released by the commit or rollback). Returns the versions applied here; empty when another
 * server got there first.
 */
export async function migratePostgres(
  pool: pg.Pool,
  migrations: readonly { version: number; sql: string }[] = POSTGRES_MIGRATIONS,
): Promise<number[]> {
  return inTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY]);
    // Under the lock: concurrent CREATE TABLE IF NOT EXISTS can otherwise fail on pg_type.
    await client.query(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)",
    );
    const done = await client.query<{ version: number }>("SELECT version FROM schema_migrations");
    const applied = new Set(done.rows.map((r) => r.version));
    const appliedHere: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (applied.has(m.version)) continue;
      await client.query(m.sql);
      await client.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())", [m.version]);
      appliedHere.push(m.version);
    }
    return appliedHere;
  });
}
