import { setTimeout as sleep } from "node:timers/promises";
import type { CkptClient } from "../api.js";
import { runPool } from "../download/pool.js";
import { DEFAULT_RETRY_POLICY } from "../download/types.js";
import { unsafeRelativeNameReason } from "../relative-name.js";
import { sha256OfFile } from "../upload/digest.js";
import { UploadRoute } from "../upload/upload-file.js";
import { loadJournal, SyncJournal, type JournalIdentity } from "./journal.js";
import { scanFolder } from "./scan.js";
import { isComplete, markerTimes, type ObservedFile } from "./settle.js";
import { checkpointIdOf } from "../../domain/checkpoint-id.js";
import { isWrittenLast } from "../../domain/checkpoint-markers.js";
import { SyncStatusReporter } from "./sync-status.js";
import { throttledFetch, TokenBucket } from "./throttle.js";
import {
  DEFAULT_SYNC_TUNING,
  type CheckpointSyncOptions,
  type FileVersion,
  type LocalFile,
  type SyncedVersion,
  type SyncEvent,
  type SyncFailure,
  type SyncSummary,
  type SyncTuning,
} from "./types.js";
import { sameVersion, uploadFileVersion, type UploadOutcome, type UploadTarget } from "./version-upload.js";

/** How long a file whose upload failed on the network or server side waits before another try. */
const RETRY_LATER_MS = 30_000;

interface UploadFailure {
  /** The version that failed; a new version of the file is tried afresh. */
  version: FileVersion;
  message: string;
  retryable: boolean;
  /** Local clock (ms) of the failure. */
  at: number;
}

interface TrackedFile extends ObservedFile {
  failure: UploadFailure | null;
}

/**
 * The training-side sync engine: watches one folder and uploads every file of it, once complete
 * (see settle.ts), as checkpoint files of one job and node rank. Versions already on the server
 * are remembered in a journal inside the folder, so a restarted engine picks up where the last
 * one stopped.
 *
 *   const sync = await CheckpointSync.open({ client, projectId, jobId, nodeRank: 0, dir });
 *   const watching = sync.watch(stopWatching.signal);  // while training runs
 *   ...; stopWatching.abort(); await watching;
 *   const summary = await sync.drain({ assumeComplete: true });  // the writer has exited
 *   await sync.close();
 */
export class CheckpointSync {
  private readonly tracked = new Map<string, TrackedFile>();
  private readonly uploads = new Map<string, Promise<void>>();
  private due: string[] = [];
  private uploadedFiles = 0;
  private uploadedBytes = 0;
  /** Failures from before this moment get one more try in the running drain; later ones are final. */
  private drainStartedAt = Infinity;
  private wakeDrain: (() => void) | null = null;

  private constructor(
    private readonly options: CheckpointSyncOptions,
    private readonly tuning: SyncTuning,
    private readonly uploadTarget: UploadTarget,
    private readonly journal: SyncJournal,
    private readonly synced: Map<string, SyncedVersion>,
    private readonly resumedFiles: number,
    private readonly statusReporter: SyncStatusReporter | null,
  ) {}

  /**
   * Reads the journal an earlier run left in the folder and keeps the versions that are still
   * true: same size, mtime and sha256 on disk, and listed by the server with that size.
   */
  static async open(options: CheckpointSyncOptions): Promise<CheckpointSync> {
    const tuning: SyncTuning = {
      settleMs: options.settleMs ?? DEFAULT_SYNC_TUNING.settleMs,
      scanIntervalMs: options.scanIntervalMs ?? DEFAULT_SYNC_TUNING.scanIntervalMs,
      concurrency: options.concurrency ?? DEFAULT_SYNC_TUNING.concurrency,
      maxBytesPerSecond: options.maxBytesPerSecond,
    };
    const identity: JournalIdentity = { projectId: options.projectId, jobId: options.jobId, nodeRank: options.nodeRank };
    const stillSynced = await verifiedJournalEntries(options, identity, tuning.concurrency);
    const emit = (event: SyncEvent) => options.onEvent?.(event);
    const journal = await SyncJournal.create(options.dir, identity, stillSynced, (err) =>
      emit({ type: "warning", message: `cannot write the sync journal: ${err.message}` }),
    );
    const uploadTarget: UploadTarget = {
      client: uploadClient(options.client, tuning.maxBytesPerSecond),
      projectId: options.projectId,
      jobId: options.jobId,
      nodeRank: options.nodeRank,
      route: new UploadRoute(),
      retry: { ...DEFAULT_RETRY_POLICY, ...options.retry },
      signal: options.signal,
    };
    const statusReporter = options.reportSyncStatus
      ? new SyncStatusReporter(options.client, options.projectId, options.jobId, (err) =>
          emit({ type: "warning", message: `cannot report checkpoint_sync_status: ${err.message}` }),
        )
      : null;
    if (stillSynced.size > 0) emit({ type: "resumed", files: stillSynced.size });
    return new CheckpointSync(options, tuning, uploadTarget, journal, stillSynced, stillSynced.size, statusReporter);
  }

  /** Scans and uploads completed files every scan interval until `stop` is aborted. */
  async watch(stop: AbortSignal): Promise<void> {
    while (!stop.aborted && !this.aborted) {
      await this.tick(false);
      await sleep(this.tuning.scanIntervalMs, undefined, { signal: stop }).catch(() => {});
    }
  }

  /**
   * Uploads everything in the folder and returns once nothing is left to do. With `assumeComplete`
   * (the writer has exited, so nothing can still be half-written) every file is uploaded at once;
   * otherwise files still being written are waited for until they complete.
   */
  async drain(options: { assumeComplete: boolean }): Promise<SyncSummary> {
    this.drainStartedAt = Date.now();
    try {
      while (!this.aborted) {
        await this.tick(options.assumeComplete);
        if (this.isIdle()) break;
        await this.untilIdleOr(this.tuning.scanIntervalMs);
      }
      await Promise.allSettled(this.uploads.values());
    } finally {
      this.drainStartedAt = Infinity;
    }
    return this.summary();
  }

  /** Files on disk not yet on the server that are not complete by the rules at this moment. */
  unsettledNames(): string[] {
    const now = Date.now();
    const markers = markerTimes(this.tracked.values());
    return [...this.tracked.values()]
      .filter((file) => !this.isSynced(file) && !isComplete(file, now, this.tuning.settleMs, markers))
      .map((file) => file.name);
  }

  /** Waits for uploads in flight and status reports, and closes the journal. */
  async close(): Promise<void> {
    await Promise.allSettled(this.uploads.values());
    await this.statusReporter?.idle();
    await this.journal.close();
  }

  private get aborted(): boolean {
    return this.uploadTarget.signal?.aborted ?? false;
  }

  private async tick(assumeComplete: boolean): Promise<void> {
    let files: Map<string, LocalFile>;
    try {
      files = await scanFolder(this.options.dir);
    } catch (err) {
      this.emit({ type: "warning", message: `cannot scan ${this.options.dir}: ${(err as Error).message}` });
      return;
    }
    const now = Date.now();
    this.observe(files, now);
    const markers = markerTimes(files.values());
    this.due = [...this.tracked.values()]
      .filter((file) => this.needsUpload(file, now) && (assumeComplete || isComplete(file, now, this.tuning.settleMs, markers)))
      .map((file) => file.name);
    this.holdBackMarkers();
    this.startUploads();
    this.reportSyncStatus();
  }

  /**
   * Markers go last: the server completes a checkpoint when its marker is committed, so a marker
   * (trainer_state.json, .metadata, an index, DeepSpeed's root `latest`) waits while any other
   * file of its checkpoint (for `latest`, of any checkpoint) is not yet on the server. Uploads run
   * in parallel, and a marker sent early would declare a checkpoint complete that is not.
   */
  private holdBackMarkers(): void {
    // A file waiting to retry after a failure still holds its markers back (a marker sent in
    // that window completes a checkpoint that misses it); only one refused for good does not.
    const pending = [...this.tracked.values()].filter((f) => !isWrittenLast(f.name) && !this.isSynced(f) && !this.isRefusedForGood(f));
    if (pending.length === 0) return;
    const waiting = new Set(pending.map((f) => checkpointIdOf(f.name)));
    const anyCheckpoint = pending.some((f) => checkpointIdOf(f.name) !== null);
    this.due = this.due.filter((name) => {
      if (!isWrittenLast(name)) return true;
      const id = checkpointIdOf(name);
      return id === null ? !anyCheckpoint : !waiting.has(id);
    });
  }

  /** Records what the scan saw; a file whose size or mtime changed starts settling again. */
  private observe(files: ReadonlyMap<string, LocalFile>, now: number): void {
    for (const name of this.tracked.keys()) if (!files.has(name)) this.tracked.delete(name);
    for (const file of files.values()) {
      const known = this.tracked.get(file.name);
      if (known && sameVersion(known, file)) continue;
      this.tracked.set(file.name, { ...file, unchangedSince: now, failure: known?.failure ?? null });
    }
  }

  private isSynced(file: FileVersion & { name: string }): boolean {
    const synced = this.synced.get(file.name);
    return synced !== undefined && sameVersion(synced, file);
  }

  /** Not on the server, not uploading, and not held back by a failure of this very version. */
  private needsUpload(file: TrackedFile, now: number): boolean {
    return !this.uploads.has(file.name) && !this.isSynced(file) && !this.isHeldByFailure(file, now);
  }

  private isRefusedForGood(file: TrackedFile): boolean {
    const failure = file.failure;
    return failure !== null && sameVersion(failure.version, file) && !failure.retryable;
  }

  private isHeldByFailure(file: TrackedFile, now: number): boolean {
    const failure = file.failure;
    if (!failure || !sameVersion(failure.version, file)) return false;
    if (!failure.retryable) return true;
    if (failure.at >= this.drainStartedAt) return true;
    return this.drainStartedAt === Infinity && now < failure.at + RETRY_LATER_MS;
  }

  private startUploads(): void {
    while (this.uploads.size < this.tuning.concurrency && !this.aborted) {
      const name = this.due.shift();
      if (name === undefined) return;
      const file = this.tracked.get(name);
      if (!file || this.uploads.has(name) || this.isSynced(file)) continue;
      const upload = this.upload(file).finally(() => this.afterUpload(name));
      this.uploads.set(name, upload);
    }
  }

  private afterUpload(name: string): void {
    this.uploads.delete(name);
    this.startUploads();
    if (this.uploads.size === 0 && this.due.length === 0) {
      this.reportSyncStatus();
      this.wakeDrain?.();
    }
  }

  private async upload(file: TrackedFile): Promise<void> {
    const version: LocalFile = { name: file.name, path: file.path, size: file.size, mtimeMs: file.mtimeMs };
    const badName = unsafeRelativeNameReason(file.name);
    let outcome: UploadOutcome;
    if (badName) outcome = { kind: "failed", message: badName, retryable: false };
    else {
      try {
        outcome = await uploadFileVersion(this.uploadTarget, version);
      } catch (err) {
        if (this.aborted) return;
        outcome = { kind: "failed", message: (err as Error).message, retryable: true };
      }
    }
    this.recordOutcome(version, outcome);
  }

  private recordOutcome(version: LocalFile, outcome: UploadOutcome): void {
    const tracked = this.tracked.get(version.name);
    switch (outcome.kind) {
      case "uploaded":
        this.synced.set(version.name, outcome.version);
        this.journal.record(version.name, outcome.version);
        this.uploadedFiles++;
        this.uploadedBytes += version.size;
        if (tracked) tracked.failure = null;
        this.emit({ type: "uploaded", name: version.name, size: version.size });
        return;
      case "changed":
        // Settle again from now, even if the scan has not yet seen the change.
        if (tracked) tracked.unchangedSince = Date.now();
        this.emit({ type: "changed-during-upload", name: version.name });
        return;
      case "vanished":
        return;
      case "failed": {
        if (tracked) tracked.failure = { version, message: outcome.message, retryable: outcome.retryable, at: Date.now() };
        const willRetry = outcome.retryable && this.drainStartedAt === Infinity;
        this.emit({ type: "upload-failed", name: version.name, message: outcome.message, willRetry });
        return;
      }
    }
  }

  /** Nothing uploading and nothing left that could still be uploaded in this drain. */
  private isIdle(): boolean {
    if (this.uploads.size > 0) return false;
    const now = Date.now();
    return [...this.tracked.values()].every((file) => this.isSynced(file) || this.isHeldByFailure(file, now));
  }

  private async untilIdleOr(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      this.wakeDrain = done;
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
    });
    this.wakeDrain = null;
  }

  /** SYNCING while any file on disk is not on the server in its current version; COMPLETED otherwise. */
  private reportSyncStatus(): void {
    if (!this.statusReporter || this.tracked.size === 0) return;
    const pending = [...this.tracked.values()].some((file) => !this.isSynced(file));
    this.statusReporter.set(pending ? "SYNCING" : "COMPLETED");
  }

  private summary(): SyncSummary {
    const failed: SyncFailure[] = [...this.tracked.values()]
      .filter((file) => !this.isSynced(file))
      .map((file) => ({ name: file.name, message: file.failure?.message ?? "not uploaded" }));
    return { uploaded: this.uploadedFiles, bytesUploaded: this.uploadedBytes, resumed: this.resumedFiles, failed };
  }

  private emit(event: SyncEvent): void {
    this.options.onEvent?.(event);
  }
}

function uploadClient(client: CkptClient, maxBytesPerSecond: number | undefined): CkptClient {
  if (maxBytesPerSecond === undefined) return client;
  return client.withFetch(throttledFetch(client.fetch, new TokenBucket(maxBytesPerSecond)));
}

/**
 * The journal's entries that are still true. The server is asked only when there is a journal
 * (a fresh run costs no listing); a digest is computed only for files whose size and mtime match.
 */
async function verifiedJournalEntries(
  options: CheckpointSyncOptions,
  identity: JournalIdentity,
  concurrency: number,
): Promise<Map<string, SyncedVersion>> {
  const recorded = await loadJournal(options.dir, identity);
  const verified = new Map<string, SyncedVersion>();
  if (recorded.size === 0) return verified;
  const listedSizes = await sizesOnServer(options.client, identity);
  const local = await scanFolder(options.dir);
  const candidates = [...recorded].filter(([name, version]) => {
    const file = local.get(name);
    return file !== undefined && sameVersion(file, version) && listedSizes.get(name) === version.size;
  });
  await runPool(candidates, concurrency, async ([name, version]) => {
    const digest = await sha256OfFile(local.get(name)!.path).catch(() => null);
    if (digest === version.sha256) verified.set(name, version);
  });
  return verified;
}

async function sizesOnServer(client: CkptClient, identity: JournalIdentity): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for await (const file of client.listCheckpointFiles({ projectId: identity.projectId, jobId: identity.jobId }))
    if (file.node_rank === identity.nodeRank) sizes.set(file.relative_file_name, file.size_bytes);
  return sizes;
}
