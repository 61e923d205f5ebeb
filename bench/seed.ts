/**
 * Jobs of any size, fast: the organisation, key, project and job go through the store (so the
 * schema and the key are exactly what the server expects), the file rows are inserted directly
 * in one big transaction. A listing needs no bytes, so by default none are written; scenarios
 * that serve or download files write the few they need with `writeBlob`.
 */
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { newId } from "../src/domain/ids.js";
import { issueKey } from "../src/domain/keys.js";
import { blobKeyOf } from "../src/domain/names.js";
import { checkpointIdOf } from "../src/domain/checkpoint-id.js";
import { PostgresMetadataStore } from "../src/stores/metadata/postgres.js";
import { SqliteMetadataStore } from "../src/stores/metadata/sqlite.js";
import type { MetadataStore } from "../src/stores/metadata/store.js";
import { onCleanup, tempDir } from "./lib.js";

export interface SeededJob {
  apiKey: string;
  projectId: string;
  jobId: string;
  fileCount: number;
}

export interface SeedFile {
  nodeRank: number;
  relativeName: string;
  sizeBytes: number;
}

/** File i of a synthetic job: 8 ranks, checkpoints of 100,000 files, names as long as real shards'. */
export function syntheticFile(i: number, filesPerCheckpoint = 100_000): SeedFile {
  const checkpoint = `checkpoint-${String(Math.floor(i / filesPerCheckpoint) * 1000).padStart(6, "0")}`;
  return { nodeRank: i % 8, relativeName: `${checkpoint}/model-${String(i).padStart(7, "0")}-of-1000000.safetensors`, sizeBytes: 1 << 20 };
}

interface CheckpointAggregate {
  id: string;
  sizeBytes: number;
  fileCount: number;
  firstSeq: number;
  ranks: Set<number>;
}

/** The per-checkpoint aggregates commitFile would have kept for these files (the bulk insert bypasses it). */
function aggregatesOf(count: number, fileAt: (i: number) => SeedFile): CheckpointAggregate[] {
  const byId = new Map<string, CheckpointAggregate>();
  for (let i = 0; i < count; i++) {
    const f = fileAt(i);
    const id = checkpointIdOf(f.relativeName);
    if (id === null) continue;
    let a = byId.get(id);
    if (!a) byId.set(id, (a = { id, sizeBytes: 0, fileCount: 0, firstSeq: i, ranks: new Set() }));
    a.sizeBytes += f.sizeBytes;
    a.fileCount++;
    a.ranks.add(f.nodeRank);
  }
  return [...byId.values()];
}

async function createJob(store: MetadataStore): Promise<Omit<SeededJob, "fileCount">> {
  const org = await store.ensureOrganisation("bench");
  const key = issueKey();
  await store.insertApiKey({ keyId: key.keyId, orgId: org.id, secretHash: key.secretHash });
  const project = await store.upsertProject(org.id, `bench-${newId()}`);
  const job = await store.createJob({ id: newId(), orgId: org.id, projectId: project.id, name: "bench", spec: {}, priority: 0 });
  return { apiKey: key.plaintext, projectId: project.id, jobId: job.id };
}

/** A job in the SQLite database of `dataDir` (created if needed) with `count` files from `fileAt`. */
export async function seedSqlite(dataDir: string, count: number, fileAt: (i: number) => SeedFile = syntheticFile): Promise<SeededJob> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, "ckpt.sqlite");
  const store = new SqliteMetadataStore(path);
  const ids = await createJob(store);
  await store.close();

  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = OFF");
  const insert = db.prepare(
    `INSERT INTO checkpoint_files (job_id, seq, node_rank, relative_name, size_bytes, sha256, last_modified, created_at)
     VALUES (?, ?, ?, ?, ?, NULL, ?, ?)`,
  );
  const now = new Date().toISOString();
  const batch = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const f = fileAt(i);
      insert.run(ids.jobId, i, f.nodeRank, f.relativeName, f.sizeBytes, now, now);
    }
  });
  // Transactions of 250,000 rows: one per million would hold the whole WAL in memory.
  for (let from = 0; from < count; from += 250_000) batch(from, Math.min(count, from + 250_000));
  db.prepare("UPDATE jobs SET file_count = ?, next_seq = ? WHERE id = ?").run(count, count, ids.jobId);
  const insertCheckpoint = db.prepare(
    `INSERT INTO checkpoints (job_id, checkpoint_id, size_bytes, file_count, first_seq, created_at, last_modified) VALUES (?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertRank = db.prepare("INSERT INTO checkpoint_ranks (job_id, checkpoint_id, node_rank) VALUES (?, ?, ?)");
  for (const a of aggregatesOf(count, fileAt)) {
    insertCheckpoint.run(ids.jobId, a.id, a.sizeBytes, a.fileCount, a.firstSeq, now, now);
    for (const rank of a.ranks) insertRank.run(ids.jobId, a.id, rank);
  }
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.close();
  return { ...ids, fileCount: count };
}

/**
 * A job in the PostgreSQL database at `url` with `count` files named as syntheticFile names
 * them, generated by the server (INSERT ... SELECT generate_series) in one statement.
 */
export async function seedPostgres(url: string, count: number, filesPerCheckpoint = 100_000): Promise<SeededJob> {
  const store = await PostgresMetadataStore.open(url, { poolSize: 1 });
  let ids: Omit<SeededJob, "fileCount">;
  try {
    ids = await createJob(store);
  } finally {
    await store.close();
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // A bulk load into a table without indexes, then one sort per index, is several times
    // faster than maintaining three B-trees and a foreign key row by row. The definitions are
    // read back from the catalog, so the rebuilt table is exactly what the migrations made.
    const constraints = (
      await client.query<{ name: string; def: string }>(
        `SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint
         WHERE conrelid = 'checkpoint_files'::regclass AND contype IN ('p', 'u', 'f') ORDER BY contype DESC`,
      )
    ).rows;
    const indexes = (
      await client.query<{ name: string; def: string }>(
        `SELECT i.relname AS name, pg_get_indexdef(i.oid) AS def FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
         WHERE x.indrelid = 'checkpoint_files'::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)`,
      )
    ).rows;
    await client.query("SET maintenance_work_mem = '512MB'");
    await client.query("BEGIN");
    for (const c of constraints) await client.query(`ALTER TABLE checkpoint_files DROP CONSTRAINT ${client.escapeIdentifier(c.name)}`);
    for (const i of indexes) await client.query(`DROP INDEX ${client.escapeIdentifier(i.name)}`);
    await client.query(
      `INSERT INTO checkpoint_files (job_id, seq, node_rank, relative_name, size_bytes, sha256, last_modified, created_at)
       SELECT $1, g, g % 8,
              'checkpoint-' || lpad(((g / $3::int) * 1000)::text, 6, '0') || '/model-' || lpad(g::text, 7, '0') || '-of-1000000.safetensors',
              1048576, NULL, now(), now()
       FROM generate_series(0, $2::int - 1) AS g`,
      [ids.jobId, count, filesPerCheckpoint],
    );
    // Unique and primary keys before the foreign key (ORDER BY contype DESC: u, p, f).
    for (const c of constraints)
      await client.query(`ALTER TABLE checkpoint_files ADD CONSTRAINT ${client.escapeIdentifier(c.name)} ${c.def}`);
    for (const i of indexes) await client.query(i.def);
    await client.query("UPDATE jobs SET file_count = $1, next_seq = $1 WHERE id = $2", [count, ids.jobId]);
    for (const a of aggregatesOf(count, (i) => syntheticFile(i, filesPerCheckpoint))) {
      await client.query(
        `INSERT INTO checkpoints (job_id, checkpoint_id, size_bytes, file_count, first_seq, created_at, last_modified) VALUES ($1, $2, $3, $4, $5, now(), now())`,
        [ids.jobId, a.id, a.sizeBytes, a.fileCount, a.firstSeq],
      );
      for (const rank of a.ranks) await client.query("INSERT INTO checkpoint_ranks (job_id, checkpoint_id, node_rank) VALUES ($1, $2, $3)", [ids.jobId, a.id, rank]);
    }
    await client.query("COMMIT");
    await client.query("VACUUM ANALYZE checkpoint_files");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    await client.end();
  }
  return { ...ids, fileCount: count };
}

/**
 * Writes a blob file of `sizeBytes` where the local blob store keeps it. The content is a
 * repeated random block (the bytes do not matter to a server that never looks at them,
 * and nginx and ckpt read the same file).
 */
export function writeBlob(dataDir: string, job: SeededJob, file: SeedFile): string {
  const path = join(dataDir, "blobs", blobKeyOf(job.projectId, job.jobId, file.nodeRank, file.relativeName));
  mkdirSync(dirname(path), { recursive: true });
  const block = randomBytes(Math.min(8 << 20, Math.max(1, file.sizeBytes)));
  const fd = openSync(path, "w", 0o644);
  try {
    for (let written = 0; written < file.sizeBytes; ) {
      const n = Math.min(block.length, file.sizeBytes - written);
      writeSync(fd, block, 0, n);
      written += n;
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

const sqliteJobs = new Map<number, Promise<SeededJob & { dataDir: string }>>();

/**
 * A SQLite data dir holding one job of `count` synthetic files, seeded once per run and shared
 * by the scenarios that only list (depth, throughput, memory). Removed at cleanup.
 */
export function sharedSqliteJob(count: number): Promise<SeededJob & { dataDir: string }> {
  let job = sqliteJobs.get(count);
  if (!job) {
    job = (async () => {
      const dir = tempDir(`sqlite-${count}`);
      return { ...(await seedSqlite(dir.path, count)), dataDir: dir.path };
    })();
    sqliteJobs.set(count, job);
    onCleanup(() => sqliteJobs.delete(count));
  }
  return job;
}
