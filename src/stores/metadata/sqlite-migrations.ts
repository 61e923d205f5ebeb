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
    // File facts (src/domain/file-facts.ts): what a committed file's own bytes say (a safetensors
    // header, an adapter config, a shard index). One row per file at most, removed with the file.
    version: 13,
    sql: `
      CREATE TABLE file_facts (
        job_id TEXT NOT NULL,
        node_rank INTEGER NOT NULL,
        relative_name TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
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
];
