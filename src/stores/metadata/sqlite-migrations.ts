/** Versioned, append-only: never edit a shipped migration, add the next one. */
export const SQLITE_MIGRATIONS: { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE organisations (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
      );
      CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organisations(id),
        secret_hash BLOB NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
      );
      CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organisations(id),
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT
      );
      -- Names are unique among live projects only: a deleted project's name can be reused.
      CREATE UNIQUE INDEX projects_org_name ON projects (org_id, name) WHERE deleted_at IS NULL;
      CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        org_id TEXT NOT NULL REFERENCES organisations(id),
        name TEXT,
        status TEXT NOT NULL,
        error_message TEXT,
        sync_status TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        spec TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        file_count INTEGER NOT NULL DEFAULT 0,
        deleted_at TEXT
      );
      CREATE INDEX jobs_project_created ON jobs (project_id, created_at);
      CREATE TABLE checkpoint_files (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        seq INTEGER NOT NULL,
        node_rank INTEGER NOT NULL,
        relative_name TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        sha256 TEXT,
        last_modified TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (job_id, seq),
        UNIQUE (job_id, node_rank, relative_name)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    sql: `
      CREATE TABLE uploads (
        upload_id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        node_rank INTEGER NOT NULL,
        relative_name TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        sha256 TEXT,
        part_size_bytes INTEGER NOT NULL,
        part_count INTEGER NOT NULL,
        backend_upload_id TEXT,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
      );
      CREATE INDEX uploads_expires ON uploads (expires_at);
    `,
  },
  {
    // Who made what (UserV1 on jobs: the email of the key that created the job), and the
    // indexes of POST /v1/training_jobs/search: every search is scoped to one organisation's live
    // jobs and ordered by created_at (rowid, the tie-break, is part of every SQLite index).
    version: 10,
    sql: `
      ALTER TABLE api_keys ADD COLUMN owner_email TEXT;
      ALTER TABLE jobs ADD COLUMN created_by_email TEXT;
      CREATE INDEX jobs_org_created ON jobs (org_id, created_at) WHERE deleted_at IS NULL;
      CREATE INDEX jobs_org_status_created ON jobs (org_id, status, created_at) WHERE deleted_at IS NULL;
    `,
  },
  {
    // Training logs: one row per line; job_log_state numbers a job's lines so the oldest can be
    // dropped by range once a job has more than its cap.
    version: 11,
    sql: `
      CREATE TABLE job_log_lines (
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts_ns INTEGER NOT NULL,
        node_rank INTEGER NOT NULL,
        stream TEXT NOT NULL,
        level TEXT,
        message TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
      ) WITHOUT ROWID;
      CREATE INDEX job_log_lines_time ON job_log_lines (job_id, ts_ns, seq);
      CREATE TABLE job_log_state (
        job_id TEXT PRIMARY KEY,
        next_seq INTEGER NOT NULL
      );
    `,
  },
  {
    // The audit log (README "Operating ckpt"): append-only, read by `ckpt admin audit`.
    version: 12,
    sql: `
      CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        key_id TEXT,
        actor TEXT NOT NULL,
        org_id TEXT,
        subject TEXT,
        details TEXT NOT NULL
      );
      CREATE INDEX audit_log_at ON audit_log (at);
    `,
  },
  {
    // File facts (src/domain/file-facts.ts): what a committed file's own bytes say (a safetensors
    // header, an adapter config, a shard index). One row per file at most, removed with the file.
    version: 13,
    sql: `
      CREATE TABLE file_facts (
        job_id TEXT NOT NULL,
        node_rank INTEGER NOT NULL,
        relative_name TEXT NOT NULL,
        checkpoint_id TEXT,
        format TEXT NOT NULL,
        error TEXT,
        parameter_count INTEGER,
        tensor_count INTEGER NOT NULL,
        summary TEXT NOT NULL,
        detail TEXT,
        PRIMARY KEY (job_id, node_rank, relative_name),
        FOREIGN KEY (job_id, node_rank, relative_name)
          REFERENCES checkpoint_files (job_id, node_rank, relative_name) ON DELETE CASCADE
      ) WITHOUT ROWID;
      CREATE INDEX file_facts_checkpoint ON file_facts (job_id, checkpoint_id);
    `,
  },
  {
    // Checkpoints as objects: per-checkpoint aggregates kept at commit time (state, sizes, counts),
    // aliases with their history, pins, retention policies, and crash-safe checkpoint deletes.
    // next_seq takes over from file_count as the next file's position: a retention delete
    // leaves gaps, and positions are never reused. The backfill below splits names at the
    // first '/' as checkpointIdOf did when this migration was written (root files: none).
    version: 14,
    sql: `
      ALTER TABLE jobs ADD COLUMN next_seq INTEGER NOT NULL DEFAULT 0;
      UPDATE jobs SET next_seq = file_count;
      CREATE TABLE checkpoints (
        job_id TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        file_count INTEGER NOT NULL,
        first_seq INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        last_modified TEXT NOT NULL,
        has_adapter_config INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'WRITING',
        completed_at TEXT,
        completed_by TEXT,
        pinned INTEGER NOT NULL DEFAULT 0,
        trainer_state TEXT,
        has_index INTEGER NOT NULL DEFAULT 0,
        requirements_pending INTEGER NOT NULL DEFAULT 0,
        deleting_at TEXT,
        PRIMARY KEY (job_id, checkpoint_id)
      ) WITHOUT ROWID;
      CREATE INDEX checkpoints_deleting ON checkpoints (deleting_at) WHERE deleting_at IS NOT NULL;
      CREATE TABLE checkpoint_ranks (
        job_id TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        node_rank INTEGER NOT NULL,
        PRIMARY KEY (job_id, checkpoint_id, node_rank)
      ) WITHOUT ROWID;
      CREATE TABLE checkpoint_requirements (
        job_id TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        node_rank INTEGER NOT NULL,
        relative_name TEXT NOT NULL,
        met INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job_id, node_rank, relative_name)
      ) WITHOUT ROWID;
      CREATE TABLE checkpoint_aliases (
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        job_id TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project_id, name)
      ) WITHOUT ROWID;
      CREATE INDEX checkpoint_aliases_target ON checkpoint_aliases (job_id, checkpoint_id);
      CREATE TABLE checkpoint_alias_history (
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        job_id TEXT,
        checkpoint_id TEXT,
        changed_at TEXT NOT NULL,
        PRIMARY KEY (project_id, name, version)
      ) WITHOUT ROWID;
      CREATE TABLE retention_policies (
        project_id TEXT PRIMARY KEY,
        policy TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      INSERT INTO checkpoints (job_id, checkpoint_id, size_bytes, file_count, first_seq, created_at, last_modified, has_adapter_config, state, completed_at, completed_by)
        SELECT f.job_id, substr(f.relative_name, 1, instr(f.relative_name, '/') - 1),
               SUM(f.size_bytes), COUNT(*), MIN(f.seq), MIN(f.created_at), MAX(f.last_modified),
               MAX(substr(f.relative_name, -20) = '/adapter_config.json'),
               CASE j.status WHEN 'TRAINING_JOB_COMPLETED' THEN 'COMPLETE'
                             WHEN 'TRAINING_JOB_FAILED' THEN 'INCOMPLETE' WHEN 'TRAINING_JOB_STOPPED' THEN 'INCOMPLETE'
                             ELSE 'WRITING' END,
               CASE j.status WHEN 'TRAINING_JOB_COMPLETED' THEN j.updated_at END,
               CASE j.status WHEN 'TRAINING_JOB_COMPLETED' THEN 'job-completed' END
        FROM checkpoint_files f JOIN jobs j ON j.id = f.job_id
        WHERE instr(f.relative_name, '/') > 1
        GROUP BY f.job_id, substr(f.relative_name, 1, instr(f.relative_name, '/') - 1);
      INSERT INTO checkpoint_ranks (job_id, checkpoint_id, node_rank)
        SELECT DISTINCT job_id, substr(relative_name, 1, instr(relative_name, '/') - 1), node_rank
        FROM checkpoint_files WHERE instr(relative_name, '/') > 1;
    `,
  },
  {
    // Every committed version of a file has its own blob key (domain/names.ts versionedBlobKey):
    // the row switch is the commit. NULL: a file committed before, at its legacy blobKeyOf key.
    // blob_writes: versioned keys being written, so gc never takes an upload in flight for an orphan.
    version: 15,
    sql: `
      ALTER TABLE checkpoint_files ADD COLUMN blob_key TEXT;
      CREATE UNIQUE INDEX checkpoint_files_blob_key ON checkpoint_files (blob_key) WHERE blob_key IS NOT NULL;
      CREATE TABLE blob_writes (
        blob_key TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        started_at TEXT NOT NULL
      );
      CREATE INDEX blob_writes_job ON blob_writes (job_id);
    `,
  },
];
