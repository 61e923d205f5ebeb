import type { DownloadEvent, DownloadSummary, ProgressSnapshot } from "../client/index.js";
import { formatBytes } from "./common.js";
import { printable } from "./output.js";

export type ProgressMode = "live" | "lines" | "json" | "quiet";

export interface ProgressReporter {
  onEvent(event: DownloadEvent): void;
  /** Prints the end of the run (the failures themselves are reported by the caller's error). */
  finish(summary: DownloadSummary): void;
}

/** Live display on a terminal, periodic lines otherwise; `--json` and `--quiet` override. */
export function progressModeFor(opts: { json?: boolean; quiet?: boolean }, stderrIsTty: boolean): ProgressMode {
  if (opts.json) return "json";
  if (opts.quiet) return "quiet";
  return stderrIsTty ? "live" : "lines";
}

export function createProgressReporter(mode: ProgressMode, linesEveryMs = 5_000): ProgressReporter {
  switch (mode) {
    case "json":
      return jsonReporter();
    case "live":
      return liveReporter();
    case "lines":
      return linesReporter(linesEveryMs);
    case "quiet":
      return { onEvent: () => {}, finish: () => {} };
  }
}

/** One JSON object per line on stdout; `progress` ticks at most once a second. */
function jsonReporter(): ProgressReporter {
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

/** One status line on stderr, redrawn in place; retries and failures are printed above it. */
function liveReporter(): ProgressReporter {
  let lastDraw = 0;
  let retries = 0;
  let latest: ProgressSnapshot | null = null;
  const draw = (): void => {
    if (latest) process.stderr.write(`\r\x1b[K${statusLine(latest, retries)}`);
  };
  return {
    onEvent(event) {
      latest = event.progress;
      if (event.type === "retry") retries++;
      if (event.type === "file-failed") {
        process.stderr.write(`\r\x1b[Kfailed: ${printable(event.file.localName)}: ${printable(event.error)}\n`);
        draw();
      }
      if (Date.now() - lastDraw >= 100 || event.type === "planned") {
        lastDraw = Date.now();
        draw();
      }
    },
    finish(summary) {
      process.stderr.write(`\r\x1b[K${summaryLine(summary)}\n`);
    },
  };
}

/** For logs and pipes: a line every few seconds, and one for each failure. */
function linesReporter(everyMs: number): ProgressReporter {
  let lastLine = Date.now();
  let retries = 0;
  return {
    onEvent(event) {
      if (event.type === "retry") retries++;
      if (event.type === "planned") process.stderr.write(planLine(event.progress) + "\n");
      if (event.type === "file-failed") process.stderr.write(`failed: ${printable(event.file.localName)}: ${printable(event.error)}\n`);
      if (event.type === "progress" && Date.now() - lastLine >= everyMs) {
        lastLine = Date.now();
        process.stderr.write(statusLine(event.progress, retries) + "\n");
      }
    },
    finish(summary) {
      process.stderr.write(summaryLine(summary) + "\n");
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
