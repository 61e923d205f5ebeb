import { dirname, posix } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { ConnectionPool } from "../transfer/get.js";
import { BlobRequestError, IntegrityError, RangeNotHonouredError, RemoteChangedError } from "./errors.js";
import { fetchRangeInto } from "./fetch-range.js";
import type { FileHasher, HashPool } from "./hash-pool.js";
import { splitIntoParts, type Part } from "./parts.js";
import type { PlannedFile } from "./plan.js";
import type { ProgressTracker } from "./progress.js";
import { runPool } from "./pool.js";
import { PartialDownload } from "./resume-state.js";
import { backoffDelay, isRetryableStatus } from "./retry.js";
import type { SafeDirs } from "./safe-dir.js";
import type { DownloadEventWithoutProgress, FileRef, RetryPolicy } from "./types.js";
import type { UrlBook } from "./url-book.js";

/** What downloading one file needs from the run it is part of. */
export interface FileDownloadContext {
  book: UrlBook;
  dirs: SafeDirs;
  stateDir: string;
  partSize: number;
  retry: RetryPolicy;
  /** Keep-alive connections for the presigned-URL GETs. */
  connections: ConnectionPool;
  /** Hashes files in worker threads as their bytes land. */
  hashPool: HashPool;
  /** Hash every file (not only those whose digest the server announces) and report the digest. */
  hashFiles: boolean;
  /** A response that sends no byte for this long is abandoned and retried. */
  idleTimeoutMs?: number;
  signal: AbortSignal;
  progress: ProgressTracker;
  /** Parts of one file that may be in flight at once right now (see parallelPartsNow). */
  parallelParts(): number;
  /** Calls `listener` whenever parallelParts() may have grown; returns the unsubscribe. */
  watchCapacity(listener: () => void): () => void;
  /** Folders files were renamed into, to be synced once at the end. */
  committedFolders: Set<string>;
  emit(event: DownloadEventWithoutProgress): void;
}

/** Starting a file over is worth it a couple of times (it changed, or failed its digest), not forever. */
const VERSION_ATTEMPTS = 3;
/**
 * A refused URL (403) is re-listed for a fresh one this many times in a row before the refusal
 * is believed: twice when the server says the URL expired, once otherwise (a URL signed with a
 * revoked secret looks forbidden too, and a re-list is cheap), so a forbidden file fails fast.
 */
const URL_REFRESHES_EXPIRED = 2;
const URL_REFRESHES_FORBIDDEN = 1;

/**
 * Downloads one file into place: resumes its partial download if the same remote version was
 * being fetched, fetches the missing parts in parallel, verifies, then renames. Resolves with
 * how it was verified and the file's SHA-256 when it was computed; throws why it failed.
 */
export async function downloadFile(file: PlannedFile, ctx: FileDownloadContext): Promise<FileOutcome> {
  await ctx.dirs.ensure(posix.dirname(file.localName));
  let partSize = ctx.partSize;
  for (let attempt = 1; ; attempt++) {
    const entry = ctx.book.lookup(file.key);
    if (!entry) throw new RemoteChangedError("the file is no longer listed by the server");
    const current = { ...file, sizeBytes: entry.file.size_bytes, lastModified: entry.file.last_modified };
    try {
      return await downloadVersion(current, partSize, ctx);
    } catch (err) {
      const startOver = err instanceof RemoteChangedError || err instanceof IntegrityError || err instanceof RangeNotHonouredError;
      if (!startOver || attempt >= VERSION_ATTEMPTS || ctx.signal.aborted) throw err;
      // The server ignores ranges: fetch this file as one stream.
      if (err instanceof RangeNotHonouredError) partSize = Math.max(current.sizeBytes, 1);
      if (err instanceof RemoteChangedError) await ctx.book.refresh(entry.generation);
      ctx.emit({ type: "retry", file: refOf(current), attempt, delayMs: 0, reason: `starting the file over: ${(err as Error).message}` });
    }
  }
}

export interface FileOutcome {
  /** "sha256" when checked against a digest the server announced, "size" otherwise. */
  verified: "sha256" | "size";
  /** SHA-256 of the bytes written (with hashFiles, or when the server announced one). */
  sha256: string | null;
}

/** One attempt at one remote version of the file (as identified by its size and last_modified). */
async function downloadVersion(file: PlannedFile, partSize: number, ctx: FileDownloadContext): Promise<FileOutcome> {
  const partial = await PartialDownload.open(ctx.stateDir, file, partSize);
  const pending = partial.pendingParts();
  const resumed = file.sizeBytes - pending.reduce((sum, p) => sum + p.end - p.start + 1, 0);
  let counted = resumed; // bytes of this file the progress tracker counts as done
  ctx.emit({ type: "file-started", file: refOf(file), resumedBytes: resumed });

  // Hashed in file order by a worker thread as the bytes land (if wanted, or a digest is announced).
  const parts = splitIntoParts(file.sizeBytes, partial.partSize);
  const hasher = ctx.hashPool.track(partial.dataPath, parts, partial.doneParts());
  if (ctx.hashFiles || partial.sha256 !== null) hasher.enable();
  const fileAbort = new AbortController();
  const signal = AbortSignal.any([ctx.signal, fileAbort.signal]);
  const onWritten = (part: Part, bytes: number): void => {
    counted += bytes;
    ctx.progress.transferred(bytes);
    hasher.written(part.index, bytes);
  };
  let keepPartial = true;
  try {
    // As many parts at once as the run allows right now, asked again as parts end or connections
    // free up; the first failure cancels the file's other requests (finished parts stay recorded).
    const limits = { concurrency: ctx.parallelParts, watchCapacity: ctx.watchCapacity, onFirstFailure: () => fileAbort.abort() };
    await runPool(pending, limits, async (part) => {
      await downloadPart(part, file, partial, ctx, signal, (bytes) => onWritten(part, bytes), hasher);
      await partial.markDone(part.index);
      if (parts.length > 1) ctx.emit({ type: "part-done", file: refOf(file), part: part.index, parts: parts.length });
    });
    ctx.signal.throwIfAborted();
    const verified = await verify(partial, file.sizeBytes, hasher, ctx.hashFiles);
    await partial.commit(file.localPath, modifiedTime(file.lastModified));
    keepPartial = false;
    ctx.committedFolders.add(dirname(file.localPath));
    return verified;
  } catch (err) {
    hasher.drop();
    if (err instanceof RemoteChangedError || err instanceof IntegrityError || err instanceof RangeNotHonouredError) {
      keepPartial = false;
      ctx.progress.rewind(counted);
      await partial.discard();
    }
    throw err;
  } finally {
    if (keepPartial) await partial.suspend();
  }
}

/**
 * Fetches one part, retrying with backoff: a cut connection continues from the last byte
 * written; a refused URL (403: expired) triggers a shared re-list for a fresh one; 404 and 412
 * mean the file changed, so the whole file starts over.
 */
async function downloadPart(
  part: Part,
  file: PlannedFile,
  partial: PartialDownload,
  ctx: FileDownloadContext,
  signal: AbortSignal,
  onWritten: (bytes: number) => void,
  hasher: FileHasher,
): Promise<void> {
  let offset = part.start;
  let failures = 0;
  let refreshes = 0;
  for (;;) {
    const entry = ctx.book.lookup(file.key);
    if (!entry) throw new RemoteChangedError("the file is no longer listed by the server");
    if (entry.file.size_bytes !== file.sizeBytes || entry.file.last_modified !== file.lastModified)
      throw new RemoteChangedError("the listing shows a new version of the file");
    const before = offset;
    try {
      await fetchRangeInto({
        url: entry.file.url,
        start: offset,
        end: part.end,
        fileSize: file.sizeBytes,
        ifMatch: partial.etag,
        handle: partial.handle,
        pool: ctx.connections,
        signal,
        idleTimeoutMs: ctx.idleTimeoutMs,
        onValidators: (etag, sha256) => {
          partial.adoptVersion(etag, sha256);
          if (partial.sha256 !== null) hasher.enable();
        },
        onWritten: (bytes) => {
          offset += bytes;
          onWritten(bytes);
        },
      });
      return;
    } catch (err) {
      if (signal.aborted) throw signal.reason ?? err;
      if (!(err instanceof BlobRequestError)) throw err;
      if (offset > before) failures = refreshes = 0; // it moved forward: a flaky link, not a dead file
      if (err.status === 403 && refreshes < (/expired/i.test(err.message) ? URL_REFRESHES_EXPIRED : URL_REFRESHES_FORBIDDEN)) {
        refreshes++;
        await ctx.book.refresh(entry.generation);
        continue;
      }
      if (err.status === 404 || err.status === 410 || err.status === 412 || err.status === 416)
        throw new RemoteChangedError(`the file changed on the server (${err.message})`);
      failures++;
      if (!isRetryableStatus(err.status) || failures >= ctx.retry.attempts) throw err;
      const delayMs = backoffDelay(failures, ctx.retry, err.retryAfterMs);
      ctx.emit({ type: "retry", file: refOf(file), attempt: failures, delayMs: Math.round(delayMs), reason: err.message });
      await sleep(delayMs, undefined, { signal });
    }
  }
}

/** Checks the finished partial file: its length, and its digest when the server announced one. */
async function verify(partial: PartialDownload, size: number, hasher: FileHasher, hashFiles: boolean): Promise<FileOutcome> {
  const actualSize = (await partial.handle.stat()).size;
  if (actualSize !== size) throw new IntegrityError(`the partial file has ${actualSize} bytes, expected ${size}`);
  const expected = partial.sha256;
  if (expected === null && !hashFiles) return { verified: "size", sha256: null };
  let actual: string;
  try {
    actual = await hasher.digest();
  } catch (err) {
    throw new IntegrityError(`could not hash the downloaded file: ${(err as Error).message}`);
  }
  if (expected === null) return { verified: "size", sha256: actual };
  if (actual !== expected) throw new IntegrityError(`sha256 is ${actual}, the server announced ${expected}`);
  return { verified: "sha256", sha256: actual };
}

function modifiedTime(lastModified: string): Date | null {
  const ms = Date.parse(lastModified);
  return Number.isNaN(ms) ? null : new Date(ms);
}

export function refOf(file: PlannedFile): FileRef {
  return { nodeRank: file.nodeRank, relativeFileName: file.relativeFileName, sizeBytes: file.sizeBytes, localName: file.localName };
}

