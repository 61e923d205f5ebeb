import { badRequest, notFound } from "./errors.js";
import type { Caller, CkptService } from "./service.js";

/** Baseten's LogLevelV1, lowest first. */
export const LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_STREAMS = ["stdout", "stderr"] as const;
export type LogStream = (typeof LOG_STREAMS)[number];

/** A line as a store keeps it. `timestampNs` is epoch nanoseconds in decimal (beyond a double's precision). */
export interface LogLineRecord {
  seq: number;
  timestampNs: string;
  nodeRank: number;
  stream: LogStream;
  level: LogLevel | null;
  message: string;
}

export type NewLogLine = Omit<LogLineRecord, "seq">;

export interface LogQuery {
  jobId: string;
  /** Inclusive. */
  fromNs: bigint;
  /** Exclusive. */
  untilNs: bigint;
  direction: "asc" | "desc";
  limit: number;
  /** Only lines with one of these levels; null: every line, with a level or not. */
  levels: LogLevel[] | null;
}

/** The longest message one line may carry; `ckpt run` cuts longer lines into pieces of this size. */
export const MAX_LOG_MESSAGE_CHARS = 16384;
/** Lines one ingest request may carry. */
export const MAX_LOG_LINES_PER_BATCH = 1000;
const DEFAULT_MAX_LOG_LINES_PER_JOB = 200_000;

const NS_PER_MS = 1_000_000n;
const MS_PER_DAY = 24 * 3600 * 1000;
/** Baseten: "the window from start to end must not exceed 7 days". */
const MAX_WINDOW_MS = 7 * MS_PER_DAY;
/** Baseten: start "defaults to 30 minutes before the end". */
const DEFAULT_WINDOW_MS = 30 * 60 * 1000;

const LEVEL_WORDS: Record<string, LogLevel> = {
  DEBUG: "DEBUG",
  INFO: "INFO",
  WARN: "WARNING",
  WARNING: "WARNING",
  ERROR: "ERROR",
  CRITICAL: "ERROR",
  FATAL: "ERROR",
};
/** A level word near the start of a line, as Python's logging, loguru, glog-style prefixes and most loggers write it. */
const LEVEL_PATTERN = /(?:^|[^A-Za-z0-9_])(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)(?![A-Za-z0-9_])/;

/** The severity a line announces in its first 120 characters, or null. Upper-case words only: "error" in prose is not a level. */
function detectLogLevel(message: string): LogLevel | null {
  const match = LEVEL_PATTERN.exec(message.slice(0, 120));
  return match ? LEVEL_WORDS[match[1]!]! : null;
}

export interface LogWindowRequest {
  start_epoch_millis?: number | null;
  end_epoch_millis?: number | null;
  direction?: "asc" | "desc" | null;
  limit?: number | null;
  min_level?: LogLevel | null;
}

export interface IngestLine {
  timestamp: string;
  stream: LogStream;
  message: string;
}

/**
 * Training logs of a job: what `ckpt run` sends, served as Baseten's `…/logs` serves them.
 * Tenancy comes from the service (the job is looked up with the caller's organisation first).
 */
export class JobLogs {
  constructor(
    private readonly service: CkptService,
    readonly maxLinesPerJob: number = DEFAULT_MAX_LOG_LINES_PER_JOB,
  ) {}

  /**
   * Stores a batch. A timestamp before the job was created is moved up to its creation: truss
   * pages a job's logs from `created_at` on, so an earlier line (a node whose clock is behind)
   * would never be shown. Beyond the cap, the job's oldest lines are dropped.
   */
  async append(caller: Caller, projectId: string, jobId: string, nodeRank: number, lines: IngestLine[]): Promise<{ stored: number }> {
    const { job } = await this.service.getJob(caller, projectId, jobId);
    const createdNs = BigInt(Date.parse(job.createdAt)) * NS_PER_MS;
    const records: NewLogLine[] = lines.map((line, i) => {
      if (!/^[0-9]{1,19}$/.test(line.timestamp)) throw badRequest(`lines[${i}].timestamp must be epoch nanoseconds as a decimal string`);
      const ns = BigInt(line.timestamp);
      return {
        timestampNs: (ns < createdNs ? createdNs : ns).toString(),
        nodeRank,
        stream: line.stream,
        level: detectLogLevel(line.message),
        message: line.message,
      };
    });
    const result = await this.service.metadata.appendLogLines(jobId, records, this.maxLinesPerJob);
    if (result === "job-gone") throw notFound("training job");
    return result;
  }

  /** Baseten's filters: a window of at most 7 days (default: the 30 minutes up to now), a direction, a limit, a minimum level. */
  async query(caller: Caller, projectId: string, jobId: string, request: LogWindowRequest, now = Date.now()): Promise<LogLineRecord[]> {
    await this.service.getJob(caller, projectId, jobId);
    const endMs = request.end_epoch_millis ?? now;
    const startMs = request.start_epoch_millis ?? endMs - DEFAULT_WINDOW_MS;
    if (startMs > endMs) throw badRequest("start_epoch_millis is after end_epoch_millis");
    if (endMs - startMs > MAX_WINDOW_MS) throw badRequest("the window from start_epoch_millis to end_epoch_millis must not exceed 7 days");
    const minLevel = request.min_level ?? null;
    const limit = request.limit ?? 500;
    // Newest first unless asked otherwise: truss reverses what it gets when it names no direction.
    const direction = request.direction ?? "desc";
    const query: LogQuery = {
      jobId,
      fromNs: BigInt(startMs) * NS_PER_MS,
      // end_epoch_millis names a millisecond, and all of it is in the window.
      untilNs: (BigInt(endMs) + 1n) * NS_PER_MS,
      direction,
      limit: limit + 1,
      levels: minLevel === null ? null : LOG_LEVELS.slice(LOG_LEVELS.indexOf(minLevel)),
    };
    const rows = await this.service.metadata.queryLogLines(query);
    return direction === "asc" ? endOnMillisecond(rows, limit) : rows.slice(0, limit);
  }
}

/**
 * truss pages forward by time: the next request starts 1 ms after the last line it got. A page
 * that ended inside a millisecond would make it skip that millisecond's other lines, so a full
 * page gives back its last millisecond's lines (unless that would leave it empty); the next page
 * starts with them. `rows` holds one line more than `limit` when there are more.
 */
function endOnMillisecond(rows: LogLineRecord[], limit: number): LogLineRecord[] {
  if (rows.length <= limit) return rows;
  const msOf = (row: LogLineRecord) => BigInt(row.timestampNs) / NS_PER_MS;
  const boundary = msOf(rows[limit]!);
  let end = limit;
  while (end > 0 && msOf(rows[end - 1]!) === boundary) end--;
  return rows.slice(0, end === 0 ? limit : end);
}
