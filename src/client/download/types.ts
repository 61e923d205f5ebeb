import type { ConnectionPool } from "../transfer/get.js";
import type { Connection } from "../connection.js";
import type { ProgressSnapshot } from "./progress.js";

/** How hard to retry one request (a ranged GET or an API call) before giving up on it. */
export interface RetryPolicy {
  /** Tries per request, counting the first. */
  attempts: number;
  /** First backoff; it doubles with each retry, with full jitter. */
  baseDelayMs: number;
  /** Cap on one backoff, and on a server's Retry-After. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { attempts: 6, baseDelayMs: 250, maxDelayMs: 15_000 };

/** Throughput knobs; the defaults come from bench/download.ts (see its header for the figures). */
export interface DownloadTuning {
  /**
   * Files downloaded at once; also the connections the last files share once every file has
   * started (4 large files left with concurrency 16 get 4 ranged requests each).
   */
  concurrency: number;
  /** The most ranged requests one file may have in flight. */
  partsPerFile: number;
  /** Bytes per ranged request, and the unit of resuming; files no larger are fetched in one request. */
  partSize: number;
}

/**
 * Chosen by measurement (bench/download.ts --sweep and bench/memory.ts; the figures are in
 * BENCHMARKS.md, scenarios 2 and 4). On loopback the client is CPU-bound and no setting stands
 * out; over a slow link the number of connections decides, so parts are small enough for a large
 * file to spread over many; one file takes at most half of them, because a single file's parts in
 * flight are what the client's memory follows.
 */
export const DEFAULT_TUNING: DownloadTuning = { concurrency: 16, partsPerFile: 8, partSize: 16 << 20 };

/** Which of a job's files to download, and where. */
export interface DownloadSelection {
  /** A checkpoint id (a top-level folder; files at the root belong to none), or "latest" (the newest COMPLETE one on ckpt). */
  checkpoint?: string;
  /** Globs on relative_file_name (picomatch); a glob without '/' matches the base name. Any may match. */
  include?: string[];
  /** Only these node ranks. */
  nodeRanks?: number[];
  /** Write `dest/<relative_file_name>` instead of `dest/rank-<n>/...`; only when one rank is selected. */
  flat?: boolean;
}

export type DownloadCheckpointOptions = Connection &
  DownloadSelection &
  Partial<DownloadTuning> & {
    /** Training project id. */
    projectId: string;
    /** Training job id. */
    jobId: string;
    /** Local folder; files land in `dest/rank-<node_rank>/<relative_file_name>`. */
    dest: string;
    /** Retry policy for every request; missing fields take DEFAULT_RETRY_POLICY's. */
    retry?: Partial<RetryPolicy>;
    /** List and plan only: report what would be downloaded, skipped or resumed; write nothing. */
    dryRun?: boolean;
    /** Called with every event; must not throw. */
    onProgress?: (event: DownloadEvent) => void;
    /** How often a `progress` event is sent while bytes flow; default 250 ms. */
    progressIntervalMs?: number;
    /** Aborting stops the download; completed parts are kept and the next run resumes them. */
    signal?: AbortSignal;
    /** Files per listing request; default 1000. */
    pageSize?: number;
    /** Keep-alive connections for the presigned-URL requests (default: a private pool, closed at the end). */
    connections?: ConnectionPool;
    /** A response that sends no byte for this long is abandoned and retried; default 60 s. */
    idleTimeoutMs?: number;
    /**
     * Also hash the files whose SHA-256 the server does not announce (in worker threads, as
     * their bytes land) and report the digest in the summary's `files`; default false, so a
     * download costs what curl's costs. A digest the server announces is always checked.
     */
    hashFiles?: boolean;
  };

/** A file as the download reports it; never carries its URL. */
export interface FileRef {
  nodeRank: number;
  relativeFileName: string;
  sizeBytes: number;
  /** Where it goes, relative to dest, with '/' separators. */
  localName: string;
}

export type DownloadEvent = { progress: ProgressSnapshot } & (
  | { type: "planned" }
  | { type: "file-started"; file: FileRef; resumedBytes: number }
  /** A part of a multi-part file is written and recorded durably: a crash from here on does not fetch it again. */
  | { type: "part-done"; file: FileRef; part: number; parts: number }
  | { type: "file-done"; file: FileRef; verified: "sha256" | "size" }
  | { type: "file-skipped"; file: FileRef }
  | { type: "file-failed"; file: FileRef; error: string }
  | { type: "retry"; file: FileRef; attempt: number; delayMs: number; reason: string }
  | { type: "urls-refreshed" }
  | { type: "progress" }
);

/** An event as the engine raises it, before the progress snapshot is attached. */
export type DownloadEventWithoutProgress = DownloadEvent extends infer E ? (E extends unknown ? Omit<E, "progress"> : never) : never;

/** What a run did (or, for a dry run, would do) with one selected file. */
export interface PlannedEntry extends FileRef {
  action: "download" | "resume" | "skip" | "refuse";
  /** Bytes already downloaded by an interrupted run, kept and not fetched again. */
  resumableBytes: number;
  /** SHA-256 of the bytes this run wrote, when it hashed the file (an announced digest, or hashFiles). */
  sha256?: string;
}

export interface DownloadSummary {
  /** Absolute destination folder. */
  dest: string;
  /** The checkpoint id selected (after resolving "latest"), if any. */
  checkpoint: string | null;
  /** Every selected file, in listing order. */
  files: PlannedEntry[];
  downloaded: number;
  skipped: number;
  /**
   * Files that could not be downloaded (after retries), with the reason. The download does not
   * throw for these: check this list.
   */
  failed: { file: FileRef; error: string }[];
  /** Bytes received over the network in this run. */
  bytesTransferred: number;
  /** Size of every selected file. */
  bytesTotal: number;
  elapsedMs: number;
}
