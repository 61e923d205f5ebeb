/** Counters of a running download, as every event carries them. */
export interface ProgressSnapshot {
  filesTotal: number;
  filesDone: number;
  filesSkipped: number;
  filesFailed: number;
  bytesTotal: number;
  /** Bytes of the selected files that are on disk: skipped files, resumed parts, and new bytes. */
  bytesDone: number;
  /** Bytes received over the network in this run. */
  bytesTransferred: number;
  /** Recent network rate (over the last few seconds). */
  bytesPerSecond: number;
  /** Seconds left at the recent rate; null until there is a rate. */
  etaSeconds: number | null;
  elapsedMs: number;
}

const RATE_WINDOW_MS = 5_000;
const SAMPLE_EVERY_MS = 200;

/** Keeps the counters, and a short history of them for the rate and ETA. */
export class ProgressTracker {
  private filesTotal = 0;
  private filesDone = 0;
  private filesSkipped = 0;
  private filesFailed = 0;
  private bytesTotal = 0;
  private bytesDone = 0;
  private bytesTransferred = 0;
  private readonly startedAt: number;
  private samples: { at: number; bytes: number }[] = [];

  constructor(private readonly now: () => number = Date.now) {
    this.startedAt = now();
    this.samples.push({ at: this.startedAt, bytes: 0 });
  }

  /** What the run covers; skipped files and resumed parts count as done from the start. */
  setTotals(totals: { files: number; bytes: number; skippedFiles: number; bytesAlreadyDone: number }): void {
    this.filesTotal = totals.files;
    this.bytesTotal = totals.bytes;
    this.filesSkipped = totals.skippedFiles;
    this.bytesDone = totals.bytesAlreadyDone;
  }

  /** New bytes written to disk. */
  transferred(bytes: number): void {
    this.bytesTransferred += bytes;
    this.bytesDone += bytes;
  }

  /** A file's partial bytes were thrown away (the remote file changed, or failed its digest). */
  rewind(bytes: number): void {
    this.bytesDone -= bytes;
  }

  fileFinished(outcome: "done" | "failed"): void {
    if (outcome === "done") this.filesDone++;
    else this.filesFailed++;
  }

  snapshot(): ProgressSnapshot {
    const now = this.now();
    this.sample(now);
    const oldest = this.samples[0]!;
    const seconds = (now - oldest.at) / 1000;
    const bytesPerSecond = seconds > 0 ? (this.bytesTransferred - oldest.bytes) / seconds : 0;
    const remaining = Math.max(0, this.bytesTotal - this.bytesDone);
    return {
      filesTotal: this.filesTotal,
      filesDone: this.filesDone,
      filesSkipped: this.filesSkipped,
      filesFailed: this.filesFailed,
      bytesTotal: this.bytesTotal,
      bytesDone: this.bytesDone,
      bytesTransferred: this.bytesTransferred,
      bytesPerSecond,
      etaSeconds: remaining === 0 ? 0 : bytesPerSecond > 0 ? remaining / bytesPerSecond : null,
      elapsedMs: now - this.startedAt,
    };
  }

  private sample(now: number): void {
    const last = this.samples[this.samples.length - 1]!;
    if (now - last.at >= SAMPLE_EVERY_MS) this.samples.push({ at: now, bytes: this.bytesTransferred });
    // Keep one sample older than the window, so the rate always spans about RATE_WINDOW_MS.
    while (this.samples.length > 2 && now - this.samples[1]!.at >= RATE_WINDOW_MS) this.samples.shift();
  }
}
