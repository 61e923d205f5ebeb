import { createHash } from "node:crypto";
import { open, readFile, rename, rm, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { RemoteChangedError } from "./errors.js";
import { partLength, splitIntoParts, type Part } from "./parts.js";
import type { PlannedFile } from "./plan.js";

/**
 * The journal kept beside a partial file. It names the remote version the bytes come from, so
 * a file replaced on the server is started over instead of being stitched from two versions.
 */
interface Journal {
  version: 1;
  node_rank: number;
  relative_file_name: string;
  size_bytes: number;
  last_modified: string;
  part_size: number;
  /** ETag of the version being fetched, once a response has told us. */
  etag: string | null;
  /** Digest the server announced (x-ckpt-sha256 / x-amz-meta-sha256), if any. */
  sha256: string | null;
  /** Indexes of parts whose bytes are written and synced. */
  done: number[];
}

/** Where a file's partial bytes and journal live inside the state folder. */
function statePaths(stateDir: string, key: string): { data: string; journal: string } {
  const id = createHash("sha256").update(key).digest("hex").slice(0, 32);
  return { data: join(stateDir, `${id}.partial`), journal: join(stateDir, `${id}.json`) };
}

async function readJournal(path: string, file: PlannedFile): Promise<Journal | null> {
  let journal: Journal;
  try {
    journal = JSON.parse(await readFile(path, "utf8")) as Journal;
  } catch {
    return null; // missing or torn: start over, which is always safe
  }
  const sameVersion =
    journal.version === 1 &&
    journal.node_rank === file.nodeRank &&
    journal.relative_file_name === file.relativeFileName &&
    journal.size_bytes === file.sizeBytes &&
    journal.last_modified === file.lastModified &&
    Number.isSafeInteger(journal.part_size) &&
    journal.part_size > 0 &&
    Array.isArray(journal.done);
  return sameVersion ? journal : null;
}

/**
 * One file being downloaded into `<state>/<id>.partial`, preallocated to its full size, parts
 * written at their offsets. Completed parts are recorded in a journal only after the bytes are
 * synced, so a journal never claims bytes a crash could lose.
 */
export class PartialDownload {
  private dirty = false;
  private saving: Promise<void> | null = null;

  private constructor(
    readonly handle: FileHandle,
    private readonly paths: { data: string; journal: string },
    private readonly journal: Journal,
  ) {}

  /** Bytes an earlier run left for this file version (0 when there is nothing to resume). */
  static async resumableBytes(stateDir: string, file: PlannedFile): Promise<number> {
    const journal = await readJournal(statePaths(stateDir, file.key).journal, file);
    if (!journal) return 0;
    const done = new Set(journal.done);
    return splitIntoParts(file.sizeBytes, journal.part_size)
      .filter((p) => done.has(p.index))
      .reduce((sum, p) => sum + partLength(p), 0);
  }

  /**
   * Opens the partial file of this version, keeping an earlier run's parts (and its part size)
   * when the journal matches; otherwise starts a fresh one with `partSize`.
   */
  static async open(stateDir: string, file: PlannedFile, partSize: number): Promise<PartialDownload> {
    const paths = statePaths(stateDir, file.key);
    const earlier = await readJournal(paths.journal, file);
    if (earlier) {
      const handle = await open(paths.data, "r+").catch(() => null);
      if (handle && (await handle.stat()).size === file.sizeBytes) return new PartialDownload(handle, paths, earlier);
      await handle?.close();
    }
    await rm(paths.journal, { force: true });
    const handle = await open(paths.data, "w+", 0o644);
    await handle.truncate(file.sizeBytes);
    return new PartialDownload(handle, paths, {
      version: 1,
      node_rank: file.nodeRank,
      relative_file_name: file.relativeFileName,
      size_bytes: file.sizeBytes,
      last_modified: file.lastModified,
      part_size: partSize,
      etag: null,
      sha256: null,
      done: [],
    });
  }

  /** Where the partial bytes are (read by the hashing threads). */
  get dataPath(): string {
    return this.paths.data;
  }

  get partSize(): number {
    return this.journal.part_size;
  }

  get etag(): string | null {
    return this.journal.etag;
  }

  get sha256(): string | null {
    return this.journal.sha256;
  }

  /** Indexes of the parts already written (by this run or an earlier one). */
  doneParts(): readonly number[] {
    return this.journal.done;
  }

  /** Parts still to fetch. */
  pendingParts(): Part[] {
    const done = new Set(this.journal.done);
    return splitIntoParts(this.journal.size_bytes, this.journal.part_size).filter((p) => !done.has(p.index));
  }

  /**
   * Called with each response's validators before its body is used: the first ETag seen pins
   * the version; a different one means the file was replaced mid-download.
   */
  adoptVersion(etag: string | undefined, sha256: string | undefined): void {
    if (etag !== undefined) {
      if (this.journal.etag === null) this.journal.etag = etag;
      else if (this.journal.etag !== etag) throw new RemoteChangedError("the file was replaced on the server during the download (ETag changed)");
    }
    if (sha256 !== undefined) {
      if (this.journal.sha256 !== null && this.journal.sha256 !== sha256)
        throw new RemoteChangedError("the file was replaced on the server during the download (digest changed)");
      this.journal.sha256 = sha256;
    }
  }

  /**
   * Records a finished part; resolves once the part survives a crash. A file of one part is not
   * journaled: its only part done means it is about to be committed, so a sync and a journal
   * write per small file would buy nothing.
   */
  async markDone(index: number): Promise<void> {
    this.journal.done.push(index);
    if (this.journal.size_bytes > this.journal.part_size) await this.save();
  }

  /**
   * Saves are coalesced: parts finishing while a save runs are written by the next one, so a
   * file costs at most one sync at a time however many parts complete.
   */
  private async save(): Promise<void> {
    this.dirty = true;
    while (this.saving) await this.saving;
    if (!this.dirty) return;
    this.dirty = false;
    this.saving = this.writeJournal().finally(() => (this.saving = null));
    await this.saving;
  }

  private async writeJournal(): Promise<void> {
    await this.handle.datasync();
    const temp = `${this.paths.journal}.tmp`;
    await writeFile(temp, JSON.stringify(this.journal));
    await rename(temp, this.paths.journal);
  }

  /**
   * Makes the partial file the finished one: sets its modification time to the listing's (so
   * the next run sees it as complete), syncs it, and renames it into place. The folder it lands
   * in is synced later, once per folder (syncFolders): until then a power cut can only undo the
   * rename, never expose a file that is not whole.
   */
  async commit(finalPath: string, modified: Date | null): Promise<void> {
    if (modified) await this.handle.utimes(modified, modified);
    await this.handle.sync();
    await this.handle.close();
    await rename(this.paths.data, finalPath);
    await rm(this.paths.journal, { force: true });
  }

  /** Stops for now, keeping what is done for the next run (if anything is). */
  async suspend(): Promise<void> {
    while (this.saving) await this.saving.catch(() => {});
    await this.handle.close().catch(() => {});
    if (this.journal.done.length === 0) await rm(this.paths.data, { force: true });
  }

  /** Throws the partial bytes away (the remote version changed, or they failed verification). */
  async discard(): Promise<void> {
    while (this.saving) await this.saving.catch(() => {});
    await this.handle.close().catch(() => {});
    await rm(this.paths.journal, { force: true });
    await rm(this.paths.data, { force: true });
  }
}

/** Makes renames into these folders durable. */
export async function syncFolders(paths: Iterable<string>): Promise<void> {
  for (const path of paths) await syncDirectory(path);
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
