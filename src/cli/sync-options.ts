import type { Command } from "commander";
import { DEFAULT_SYNC_TUNING, type SyncEvent, type SyncSummary, type SyncTuning } from "../client/sync/types.js";
import { CliError, formatBytes, parseIntegerOption } from "./common.js";
import { parseByteSize, printable } from "./output.js";
import { createReporter, quietOption } from "./reporter.js";

/** The engine options `ckpt run` and `ckpt sync` share. */
export function withSyncOptions(cmd: Command): Command {
  return cmd
    .option(
      "--settle <seconds>",
      `a file is complete once its size and mtime have not changed for this long (default ${DEFAULT_SYNC_TUNING.settleMs / 1000})`,
      parseSeconds("--settle"),
    )
    .option("--scan-interval <seconds>", `how often the folder is scanned (default ${DEFAULT_SYNC_TUNING.scanIntervalMs / 1000})`, parseSeconds("--scan-interval"))
    .option("--concurrency <n>", `files uploaded at once (default ${DEFAULT_SYNC_TUNING.concurrency})`, parseIntegerOption("--concurrency", 1, 64))
    .option("--max-upload-rate <size>", "upload bandwidth cap per second for all files together, e.g. 50MiB (default: none)", parseRate)
    .addOption(quietOption());
}

export interface SyncCliOptions {
  settle?: number;
  scanInterval?: number;
  concurrency?: number;
  maxUploadRate?: number;
  quiet?: boolean;
}

export function syncTuningFrom(opts: SyncCliOptions): Partial<SyncTuning> {
  return {
    settleMs: opts.settle === undefined ? undefined : opts.settle * 1000,
    scanIntervalMs: opts.scanInterval === undefined ? undefined : opts.scanInterval * 1000,
    concurrency: opts.concurrency,
    maxBytesPerSecond: opts.maxUploadRate,
  };
}

/** One line on stderr per event, prefixed so it stands out in the training command's output. */
export function logSyncEvent(quiet: boolean): (event: SyncEvent) => void {
  const reporter = createReporter({ quiet, prefix: LINE_PREFIX });
  return (event) => {
    switch (event.type) {
      case "resumed":
        return reporter.info(`${event.files} files already synced by an earlier run`);
      case "uploaded":
        return reporter.info(`uploaded ${printable(event.name)} (${formatBytes(event.size)})`);
      case "changed-during-upload":
        return reporter.info(`${printable(event.name)} changed while being uploaded; it is uploaded again once it settles`);
      case "upload-failed":
        return reporter.warn(`upload of ${printable(event.name)} failed${event.willRetry ? " (will retry)" : ""}: ${printable(event.message)}`);
      case "warning":
        return reporter.warn(printable(event.message));
    }
  };
}

export function describeSummary(summary: SyncSummary): string {
  return (
    `${summary.uploaded} uploaded (${formatBytes(summary.bytesUploaded)}), ` +
    `${summary.resumed} already synced by an earlier run, ${summary.failed.length} not synced`
  );
}

export function describeFailures(summary: SyncSummary): string {
  return summary.failed.map((f) => `  ${printable(f.name)}: ${printable(f.message)}`).join("\n");
}

const LINE_PREFIX = "ckpt: ";

/** A line that is always printed (summaries with failures, exits), with the same prefix as the events. */
export function log(message: string): void {
  process.stderr.write(`${LINE_PREFIX}${message}\n`);
}

/** Bytes per second, as a size ("50MiB"); zero would never send anything. */
function parseRate(raw: string): number {
  const rate = parseByteSize("--max-upload-rate")(raw);
  if (rate === 0) throw new CliError("--max-upload-rate must be above 0");
  return rate;
}

/** A positive number of seconds, decimals allowed ("0.3"). */
export function parseSeconds(name: string) {
  return (raw: string): number => {
    const seconds = Number(raw);
    if (!/^[0-9]+(\.[0-9]+)?$/.test(raw.trim()) || !(seconds > 0) || seconds > 86_400)
      throw new CliError(`${name} must be a number of seconds above 0 (got '${raw}')`);
    return seconds;
  };
}
