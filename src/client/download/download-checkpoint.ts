import { lstat, mkdir, rmdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { clientFor } from "../connection.js";
import { ConnectionPool } from "../transfer/get.js";
import { downloadFile, refOf, type FileDownloadContext } from "./file-download.js";
import { HashPool } from "./hash-pool.js";
import { latestCheckpointId } from "./latest-checkpoint.js";
import { lockStateDir } from "./lock.js";
import { planDownload, STATE_DIR_NAME, type PlannedFile, type PlanSelection } from "./plan.js";
import { runPool } from "./pool.js";
import { ProgressTracker } from "./progress.js";
import { PartialDownload, syncFolders } from "./resume-state.js";
import { retryingFetch } from "./retry.js";
import { SafeDirs } from "./safe-dir.js";
import {
  DEFAULT_RETRY_POLICY,
  DEFAULT_TUNING,
  type DownloadCheckpointOptions,
  type DownloadEvent,
  type DownloadEventWithoutProgress,
  type DownloadSummary,
  type DownloadTuning,
  type PlannedEntry,
  type RetryPolicy,
} from "./types.js";
import { listAllFiles, UrlBook } from "./url-book.js";

/**
 * Downloads a job's checkpoint files (all of them, or a selection) into
 * `dest/rank-<node_rank>/<relative_file_name>`: many files at once, large files as parallel
 * ranged parts, each file renamed into place only once complete and verified. Interrupted runs
 * resume; files already complete are skipped. Works against ckpt and against Baseten's API: it
 * needs only the checkpoint_files listing and GETs with a Range header on its URLs.
 *
 * Resolves with a summary even when some files failed (after retries): check `failed`. Throws
 * when the listing cannot be read, the selection is invalid, or `signal` aborts.
 */
export async function downloadCheckpoint(options: DownloadCheckpointOptions): Promise<DownloadSummary> {
  const tuning = tuningFrom(options);
  const retry: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...options.retry };
  const signal = options.signal ?? new AbortController().signal;
  const dest = resolve(options.dest);
  const progress = new ProgressTracker();
  const emit = (event: DownloadEventWithoutProgress): void => options.onProgress?.({ ...event, progress: progress.snapshot() } as DownloadEvent);

  const baseClient = clientFor(options);
  const client = baseClient.withFetch(retryingFetch(baseClient.fetch, retry));
  const listArgs = { projectId: options.projectId, jobId: options.jobId, pageSize: options.pageSize, signal };
  const book = await UrlBook.load(
    () => listAllFiles(client, listArgs),
    () => emit({ type: "urls-refreshed" }),
  );
  const checkpoint =
    options.checkpoint === "latest" ? await latestCheckpointId(client, options.projectId, options.jobId, async () => book.files()) : options.checkpoint;
  const selection = { checkpointId: checkpoint, include: options.include, nodeRanks: options.nodeRanks, flat: options.flat };
  const run = await planRun(book, selection, dest);
  progress.setTotals(run.totals);
  emit({ type: "planned" });
  for (const { file, error } of run.failed) emit({ type: "file-failed", file, error });
  for (const file of run.skipped) emit({ type: "file-skipped", file: refOf(file) });
  const summary = (downloaded: number): DownloadSummary => ({
    dest,
    checkpoint: checkpoint ?? null,
    files: run.entries,
    downloaded,
    skipped: run.skipped.length,
    failed: run.failed,
    bytesTransferred: progress.snapshot().bytesTransferred,
    bytesTotal: run.totals.bytes,
    elapsedMs: progress.snapshot().elapsedMs,
  });
  if (options.dryRun) return summary(0);

  const digests = new Map<string, string>();
  const downloaded = await fetchFiles(run.toFetch, run.failed, {
    book,
    dest,
    tuning,
    retry,
    signal,
    progress,
    emit,
    connections: options.connections,
    hashFiles: options.hashFiles ?? false,
    digests,
    idleTimeoutMs: options.idleTimeoutMs,
    progressIntervalMs: options.progressIntervalMs,
  });
  emit({ type: "progress" });
  for (const entry of run.entries) {
    const sha256 = digests.get(entry.localName);
    if (sha256 !== undefined && entry.action !== "refuse") entry.sha256 = sha256;
  }
  return summary(downloaded);
}

interface RunPlan {
  /** Every selected file with what the run does with it, in listing order (refused ones last). */
  entries: PlannedEntry[];
  toFetch: PlannedFile[];
  skipped: PlannedFile[];
  /** Starts with the refused files; the download adds the ones that fail. */
  failed: DownloadSummary["failed"];
  totals: { files: number; bytes: number; skippedFiles: number; bytesAlreadyDone: number };
}

/** Selects and maps the files, then sorts them into to-fetch (new or resumed) and already complete. */
async function planRun(book: UrlBook, selection: PlanSelection, dest: string): Promise<RunPlan> {
  const plan = planDownload(book.files(), selection, dest);
  const classified = await classify(plan.files, join(dest, STATE_DIR_NAME));
  const skipped = classified.filter((c) => c.entry.action === "skip");
  return {
    entries: [...classified.map((c) => c.entry), ...plan.refused.map(({ file }) => ({ ...file, action: "refuse" as const, resumableBytes: 0 }))],
    toFetch: classified.filter((c) => c.entry.action !== "skip").map((c) => c.file),
    skipped: skipped.map((c) => c.file),
    failed: plan.refused.map(({ file, reason }) => ({ file, error: `refused: ${reason}` })),
    totals: {
      files: classified.length,
      bytes: classified.reduce((sum, c) => sum + c.file.sizeBytes, 0),
      skippedFiles: skipped.length,
      bytesAlreadyDone: classified.reduce((sum, c) => sum + (c.entry.action === "skip" ? c.file.sizeBytes : c.entry.resumableBytes), 0),
    },
  };
}

/**
 * Downloads `files` with `concurrency` in flight, holding the destination's lock. A file that
 * fails is added to `failed` and the others go on. Resolves with how many were downloaded;
 * throws only when aborted.
 */
async function fetchFiles(
  files: PlannedFile[],
  failed: DownloadSummary["failed"],
  run: {
    book: UrlBook;
    dest: string;
    tuning: DownloadTuning;
    retry: RetryPolicy;
    signal: AbortSignal;
    progress: ProgressTracker;
    emit: FileDownloadContext["emit"];
    connections: ConnectionPool | undefined;
    hashFiles: boolean;
    /** Filled in: the SHA-256 of each file downloaded and hashed, by local name. */
    digests: Map<string, string>;
    idleTimeoutMs: number | undefined;
    progressIntervalMs: number | undefined;
  },
): Promise<number> {
  const stateDir = join(run.dest, STATE_DIR_NAME);
  await mkdir(run.dest, { recursive: true });
  const dirs = new SafeDirs(run.dest);
  await dirs.ensure(STATE_DIR_NAME);
  const unlock = await lockStateDir(stateDir);
  const connections = run.connections ?? new ConnectionPool();
  const hashPool = new HashPool();
  const ticker = setInterval(() => run.emit({ type: "progress" }), run.progressIntervalMs ?? 250);
  ticker.unref();
  let started = 0;
  let active = 0;
  // Files that could take more parts when connections free up (the last file starts, or one ends).
  const capacityWatchers = new Set<() => void>();
  const capacityChanged = (): void => capacityWatchers.forEach((widen) => widen());
  const ctx: FileDownloadContext = {
    book: run.book,
    dirs,
    stateDir,
    partSize: run.tuning.partSize,
    retry: run.retry,
    connections,
    hashPool,
    hashFiles: run.hashFiles,
    idleTimeoutMs: run.idleTimeoutMs,
    signal: run.signal,
    progress: run.progress,
    parallelParts: () => parallelPartsNow(run.tuning, files.length - started, active),
    watchCapacity: (listener) => {
      capacityWatchers.add(listener);
      return () => capacityWatchers.delete(listener);
    },
    committedFolders: new Set(),
    emit: run.emit,
  };
  let downloaded = 0;
  try {
    await runPool(files, run.tuning.concurrency, async (file) => {
      started++;
      if (run.signal.aborted) return;
      active++;
      if (started === files.length) capacityChanged();
      try {
        const { verified, sha256 } = await downloadFile(file, ctx);
        if (sha256 !== null) run.digests.set(file.localName, sha256);
        downloaded++;
        run.progress.fileFinished("done");
        run.emit({ type: "file-done", file: refOf(file), verified });
      } catch (err) {
        if (run.signal.aborted) return;
        run.progress.fileFinished("failed");
        failed.push({ file: refOf(file), error: describe(err) });
        run.emit({ type: "file-failed", file: refOf(file), error: describe(err) });
      } finally {
        active--;
        capacityChanged();
      }
    });
    await syncFolders(ctx.committedFolders);
    run.signal.throwIfAborted();
    return downloaded;
  } finally {
    clearInterval(ticker);
    if (!run.connections) connections.close();
    await hashPool.close();
    await unlock();
    // Left only when something is still partial; otherwise the folder holds just the files.
    await rmdir(stateDir).catch(() => {});
  }
}

/**
 * How many parts one file may have in flight. While files wait to start, one: the files in
 * flight already use the `concurrency` connections, and a file fetched part after part is
 * hashed as it streams. Once all have started, the files still running share the connections
 * the finished ones left (so the last few large files widen), at most partsPerFile each.
 */
function parallelPartsNow(tuning: DownloadTuning, waiting: number, active: number): number {
  if (waiting > 0) return 1;
  return Math.max(1, Math.min(tuning.partsPerFile, Math.floor(tuning.concurrency / Math.max(1, active))));
}

function tuningFrom(options: Partial<DownloadTuning>): DownloadTuning {
  const tuning = {
    concurrency: options.concurrency ?? DEFAULT_TUNING.concurrency,
    partsPerFile: options.partsPerFile ?? DEFAULT_TUNING.partsPerFile,
    partSize: options.partSize ?? DEFAULT_TUNING.partSize,
  };
  const check = (name: string, value: number, min: number, max: number): void => {
    if (!Number.isSafeInteger(value) || value < min || value > max) throw new RangeError(`${name} must be an integer from ${min} to ${max} (got ${value})`);
  };
  check("concurrency", tuning.concurrency, 1, 1024);
  check("partsPerFile", tuning.partsPerFile, 1, 256);
  check("partSize", tuning.partSize, 64 << 10, 2 ** 40);
  return tuning;
}

/**
 * What to do with each planned file: skip it when the local file is already the listed version
 * (same size, modification time set from last_modified by an earlier run), resume it when an
 * earlier run left parts of this version, download it otherwise.
 */
async function classify(files: PlannedFile[], stateDir: string): Promise<{ file: PlannedFile; entry: PlannedEntry }[]> {
  const classified: { file: PlannedFile; entry: PlannedEntry }[] = new Array(files.length);
  const indexes = files.map((_, i) => i);
  await runPool(indexes, 64, async (i) => {
    const file = files[i]!;
    const base = { nodeRank: file.nodeRank, relativeFileName: file.relativeFileName, sizeBytes: file.sizeBytes, localName: file.localName };
    if (await isComplete(file)) {
      classified[i] = { file, entry: { ...base, action: "skip", resumableBytes: 0 } };
      return;
    }
    const resumableBytes = await PartialDownload.resumableBytes(stateDir, file);
    classified[i] = { file, entry: { ...base, action: resumableBytes > 0 ? "resume" : "download", resumableBytes } };
  });
  return classified;
}

async function isComplete(file: PlannedFile): Promise<boolean> {
  const info = await lstat(file.localPath).catch(() => null);
  if (!info?.isFile() || info.size !== file.sizeBytes) return false;
  const listed = Date.parse(file.lastModified);
  return Number.isNaN(listed) || Math.floor(info.mtimeMs / 1000) === Math.floor(listed / 1000);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
