import type { CkptClient } from "../api.js";

export type SyncStatus = "SYNCING" | "COMPLETED";

/**
 * Keeps the job's checkpoint_sync_status in step with the engine: one PATCH at a time, and only
 * the latest wanted value is sent, so a slow SYNCING can never land after a newer COMPLETED.
 * A failed report is passed to `onError` and not retried on its own: the next change (or the
 * final report of `ckpt run`) sends the then-current value. Training never waits on this.
 */
export class SyncStatusReporter {
  private sent: SyncStatus | null = null;
  private wanted: SyncStatus | null = null;
  private sending: Promise<void> | null = null;

  constructor(
    private readonly client: CkptClient,
    private readonly projectId: string,
    private readonly jobId: string,
    private readonly onError: (err: Error) => void,
  ) {}

  set(status: SyncStatus): void {
    this.wanted = status;
    this.sending ??= this.sendUntilCurrent().finally(() => (this.sending = null));
  }

  /** Resolves once nothing is being sent. */
  async idle(): Promise<void> {
    await this.sending;
  }

  private async sendUntilCurrent(): Promise<void> {
    while (this.wanted !== null && this.wanted !== this.sent) {
      const status: SyncStatus = this.wanted;
      try {
        await this.client.updateJob(this.projectId, this.jobId, { checkpoint_sync_status: status });
        this.sent = status;
      } catch (err) {
        this.onError(err as Error);
        return;
      }
    }
  }
}
