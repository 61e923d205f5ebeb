import type { DownloadEvent, DownloadSummary } from "../client/download/types.js";
import type { ProgressSnapshot } from "../client/download/progress.js";
import { formatBytes } from "./common.js";
import { printable } from "./output.js";

import type { Reporter } from "./reporter.js";
import type { OutputFormat } from "./output.js";

export interface ProgressReporter {
  onEvent(event: DownloadEvent): void;
  /** Prints the end of the run (the failures themselves are reported by the caller's error). */
  finish(summary: DownloadSummary): void;
}

/**
 * What `ckpt download` shows, by `-o`: `table` (the default) tells the person through the
 * command's reporter (the plan and the summary as lines, a live status line on a terminal,
 * failures as warnings); `jsonl` prints every event as a JSON line on stdout (`--json`);
 * `json` prints one JSON document, the summary, at the end.
 */
export function createProgressReporter(format: OutputFormat, reporter: Reporter): ProgressReporter {
  if (format === "jsonl") return jsonLinesReporter();
  if (format === "json") return { onEvent: () => {}, finish: (summary) => process.stdout.write(JSON.stringify(summary, null, 2) + "\n") };
  return humanReporter(reporter);
}

/** One JSON object per line on stdout; `progress` ticks at most once a second. */
function jsonLinesReporter(): ProgressReporter {
  let lastTick = 0;
  return {
    onEvent(event) {
      if (event.type === "progress") {
        if (Date.now() - lastTick < 1000) return;
        lastTick = Date.now();
      }
      process.stdout.write(JSON.stringify(event) + "\n");
    },
    finish(summary) {
      process.stdout.write(JSON.stringify({ type: "summary", ...summary }) + "\n");
    },
  };
}

function humanReporter(reporter: Reporter): ProgressReporter {
  let lastDraw = 0;
  let retries = 0;
  return {
    onEvent(event) {
      if (event.type === "retry") retries++;
      if (event.type === "planned") reporter.info(planLine(event.progress));
      if (event.type === "file-failed") reporter.warn(`failed: ${printable(event.file.localName)}: ${printable(event.error)}`);
      if (Date.now() - lastDraw >= 100 || event.type === "planned") {
        lastDraw = Date.now();
        reporter.progress(statusLine(event.progress, retries));
      }
    },
    finish(summary) {
      reporter.clearProgress();
      reporter.info(summaryLine(summary));
    },
  };
}

function planLine(p: ProgressSnapshot): string {
  const toFetch = p.filesTotal - p.filesSkipped;
  return (
    `${files(p.filesTotal)} (${formatBytes(p.bytesTotal)}): ${toFetch} to download (${formatBytes(p.bytesTotal - p.bytesDone)} to fetch), ` +
    `${p.filesSkipped} already complete`
  );
}

function files(n: number): string {
  return n === 1 ? "1 file" : `${n} files`;
}

function statusLine(p: ProgressSnapshot, retries: number): string {
  const percent = p.bytesTotal > 0 ? ` (${Math.floor((100 * p.bytesDone) / p.bytesTotal)}%)` : "";
  const eta = p.etaSeconds === null ? "ETA --" : `ETA ${formatDuration(p.etaSeconds)}`;
  const extras = [p.filesFailed ? `${p.filesFailed} failed` : "", retries ? `${retries} retries` : ""].filter(Boolean).join(", ");
  return (
    `${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)}${percent}  ${formatBytes(Math.round(p.bytesPerSecond))}/s  ${eta}  ` +
    `files ${p.filesDone + p.filesSkipped}/${p.filesTotal}${extras ? `  ${extras}` : ""}`
  );
}

function summaryLine(s: DownloadSummary): string {
  const seconds = s.elapsedMs / 1000;
  const rate = seconds > 0 ? `, ${formatBytes(Math.round(s.bytesTransferred / seconds))}/s` : "";
  const failed = s.failed.length ? `; ${s.failed.length} failed` : "";
  return `downloaded ${files(s.downloaded)} (${formatBytes(s.bytesTransferred)}) in ${seconds.toFixed(1)} s${rate}; ${s.skipped} already complete${failed}`;
}

function formatDuration(seconds: number): string {
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
