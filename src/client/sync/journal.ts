import { open, readFile, rename, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { SyncedVersion } from "./types.js";
import { isSha256Hex } from "../../domain/digests.js";

/**
 * The resume journal: `DIR/.ckpt-sync.jsonl`, one JSON line per uploaded file version (its size,
 * mtime and sha256), after a header naming the job and rank it belongs to.
 *
 * Lines are appended, not rewritten, so recording an upload costs the same in a job of ten files
 * and of a million, and a crash can at worst tear the last line (which is then ignored, and the
 * file is uploaded again — always safe). It lives inside DIR so that each rank's folder carries its
 * own; the scan never reports it, so it is never uploaded.
 */
export const JOURNAL_NAME = ".ckpt-sync.jsonl";

/** The journal and its temporary twin, at the root of the synced folder. */
export function isJournalFile(rootEntryName: string): boolean {
  return rootEntryName === JOURNAL_NAME || rootEntryName.startsWith(`${JOURNAL_NAME}.`);
}

export interface JournalIdentity {
  projectId: string;
  jobId: string;
  nodeRank: number;
}

interface HeaderLine {
  ckpt_sync_journal: 1;
  project_id: string;
  job_id: string;
  node_rank: number;
}

interface EntryLine {
  name: string;
  size: number;
  mtime_ms: number;
  sha256: string;
}

/**
 * What an earlier run recorded for this job and rank: the last version per file. A journal of
 * another job or rank (the folder was reused) or an unreadable one counts as empty.
 */
export async function loadJournal(dir: string, identity: JournalIdentity): Promise<Map<string, SyncedVersion>> {
  const entries = new Map<string, SyncedVersion>();
  let text: string;
  try {
    text = await readFile(join(dir, JOURNAL_NAME), "utf8");
  } catch {
    return entries;
  }
  const [first, ...rest] = text.split("\n");
  if (!isHeaderOf(parseLine(first), identity)) return entries;
  for (const line of rest) {
    const entry = parseLine(line);
    if (isEntryLine(entry)) entries.set(entry.name, { size: entry.size, mtimeMs: entry.mtime_ms, sha256: entry.sha256 });
  }
  return entries;
}

/** An open journal that uploads are appended to. */
export class SyncJournal {
  private pending: Promise<void> = Promise.resolve();

  private constructor(
    private readonly handle: FileHandle,
    private readonly onError: (err: Error) => void,
  ) {}

  /**
   * Starts the journal afresh with `kept` (the entries still true), replacing the old one in one
   * rename so that a crash leaves either the old journal or the new one, and opens it for appending.
   */
  static async create(
    dir: string,
    identity: JournalIdentity,
    kept: ReadonlyMap<string, SyncedVersion>,
    onError: (err: Error) => void,
  ): Promise<SyncJournal> {
    const path = join(dir, JOURNAL_NAME);
    const header: HeaderLine = { ckpt_sync_journal: 1, project_id: identity.projectId, job_id: identity.jobId, node_rank: identity.nodeRank };
    const entries = [...kept].map(([name, version]) => entryLine(name, version));
    await writeFile(`${path}.tmp`, `${JSON.stringify(header)}\n${entries.join("")}`, { mode: 0o600 });
    await rename(`${path}.tmp`, path);
    return new SyncJournal(await open(path, "a"), onError);
  }

  /** Appends one uploaded version; writes are queued in order and never throw into the caller. */
  record(name: string, version: SyncedVersion): void {
    this.pending = this.pending
      .then(() => this.handle.appendFile(entryLine(name, version)))
      .catch((err: Error) => this.onError(err));
  }

  async close(): Promise<void> {
    await this.pending;
    await this.handle.close();
  }
}

function entryLine(name: string, version: SyncedVersion): string {
  const entry: EntryLine = { name, size: version.size, mtime_ms: version.mtimeMs, sha256: version.sha256 };
  return `${JSON.stringify(entry)}\n`;
}

function parseLine(line: string | undefined): unknown {
  try {
    return JSON.parse(line ?? "");
  } catch {
    return null;
  }
}

function isHeaderOf(value: unknown, identity: JournalIdentity): boolean {
  const header = value as Partial<HeaderLine> | null;
  return (
    header?.ckpt_sync_journal === 1 &&
    header.project_id === identity.projectId &&
    header.job_id === identity.jobId &&
    header.node_rank === identity.nodeRank
  );
}

function isEntryLine(value: unknown): value is EntryLine {
  const entry = value as Partial<EntryLine> | null;
  return (
    typeof entry?.name === "string" &&
    Number.isSafeInteger(entry.size) &&
    typeof entry.mtime_ms === "number" &&
    isSha256Hex(entry.sha256)
  );
}
