import type { S3Client } from "@aws-sdk/client-s3";
import { S3Presigner, type S3PresignCredentials } from "../sigv4-presign.js";

/** Never re-read credentials more often than this (a provider may keep returning the same ones). */
const MIN_REFRESH_DELAY_MS = 30_000;

/**
 * When to re-read credentials that expire: halfway through their remaining life (so presigned
 * URLs, which cannot outlive the credentials that signed them, keep getting at least half of it)
 * and at the latest 10 minutes before expiry, but not more often than every 30 s unless they are
 * that short-lived. Expired ones (a provider that keeps returning them) are retried every 30 s.
 */
export function credentialRefreshDelayMs(expiration: Date, nowMs: number): number {
  const left = expiration.getTime() - nowMs;
  if (!(left > 0)) return MIN_REFRESH_DELAY_MS;
  const target = Math.min(left / 2, left - 10 * 60_000);
  const floor = Math.min(MIN_REFRESH_DELAY_MS, left / 2);
  return Math.min(Math.floor(Math.max(target, floor)), 2 ** 31 - 1);
}

function presignCredentials(identity: { accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date }): S3PresignCredentials {
  return {
    accessKeyId: identity.accessKeyId,
    secretAccessKey: identity.secretAccessKey,
    sessionToken: identity.sessionToken,
    expiration: identity.expiration,
  };
}

/**
 * Presigning is synchronous and local (S3Presigner): the client's credentials are resolved once
 * by start() and, when they expire, re-read in the background well before they do.
 */
export class RefreshingPresigner {
  private presigner: S3Presigner | null = null;
  private refreshTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly client: S3Client,
    private readonly target: { endpoint: string; region: string; forcePathStyle: boolean },
  ) {}

  async start(): Promise<void> {
    const identity = await this.client.config.credentials();
    this.presigner = new S3Presigner({ ...this.target, credentials: presignCredentials(identity) });
    this.scheduleRefresh(identity.expiration);
  }

  get(): S3Presigner {
    if (!this.presigner) throw new Error("S3BlobStore.init() must complete before presigning");
    return this.presigner;
  }

  close(): void {
    this.closed = true;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
  }

  private scheduleRefresh(expiration: Date | undefined): void {
    if (expiration === undefined || this.closed) return;
    this.setRefreshTimer(credentialRefreshDelayMs(expiration, Date.now()));
  }

  private setRefreshTimer(delayMs: number): void {
    this.refreshTimer = setTimeout(() => {
      this.client.config
        .credentials({ forceRefresh: true })
        .then((identity) => {
          if (this.closed) return;
          this.presigner?.setCredentials(presignCredentials(identity));
          this.scheduleRefresh(identity.expiration);
        })
        // Keep the old credentials (the presigner clamps URLs to their expiry) and retry.
        .catch(() => {
          if (!this.closed) this.setRefreshTimer(MIN_REFRESH_DELAY_MS);
        });
    }, delayMs);
    this.refreshTimer.unref();
  }
}
