import { setTimeout as sleep } from "node:timers/promises";
import type { RetryPolicy } from "./types.js";

/** Statuses worth another try: no answer (0), timeouts, throttling, and server-side failures. */
export function isRetryableStatus(status: number): boolean {
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

/** Retry-After as milliseconds (delta-seconds or an HTTP date), or undefined when absent/garbled. */
export function parseRetryAfter(header: string | null | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  if (/^[0-9]+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * Wait before try number `attempt + 1`: exponential with full jitter (so many workers failing
 * together do not come back together), but never less than what the server asked for, and
 * never more than the cap.
 */
export function backoffDelay(attempt: number, policy: RetryPolicy, retryAfterMs?: number): number {
  const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  const jittered = Math.random() * exponential;
  return Math.min(policy.maxDelayMs, Math.max(jittered, retryAfterMs ?? 0));
}

/**
 * A fetch that retries idempotent requests (GET/HEAD) on network errors, 408, 429 and 5xx,
 * honouring Retry-After. The final answer (or error) is passed through unchanged.
 */
export function retryingFetch(fetchImpl: typeof fetch, policy: RetryPolicy, onRetry?: (reason: string, delayMs: number) => void): typeof fetch {
  return async (input, init) => {
    const method = (init?.method ?? "GET").toUpperCase();
    if (method !== "GET" && method !== "HEAD") return fetchImpl(input, init);
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= policy.attempts;
      let reason: string;
      let retryAfterMs: number | undefined;
      try {
        const response = await fetchImpl(input, init);
        if (last || !isRetryableStatus(response.status)) return response;
        reason = `HTTP ${response.status}`;
        retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
        await response.body?.cancel().catch(() => {});
      } catch (err) {
        if (last || (err as Error).name === "AbortError") throw err;
        reason = (err as Error).message;
      }
      const delayMs = backoffDelay(attempt, policy, retryAfterMs);
      onRetry?.(reason, delayMs);
      await sleep(delayMs, undefined, { signal: init?.signal ?? undefined });
    }
  };
}
