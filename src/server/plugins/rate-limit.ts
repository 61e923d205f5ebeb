import type { FastifyInstance } from "fastify";
import type { RateLimit } from "../../config.js";
import { callerOf } from "./auth.js";
import { errorBody } from "../error-body.js";

/**
 * A token bucket per API key: each key may send `burst` requests at once and `perSecond` a
 * second on average; beyond that it gets a 429 with `Retry-After` (whole seconds until a token is
 * back). Keyed by the authenticated key id, so it must be installed after requireApiKey in the
 * same scope: a request with a bad key is a 401 before it costs anyone a token. The buckets live
 * in this process; with several servers behind a balancer each one enforces the limit alone.
 */
export function limitRatePerKey(app: FastifyInstance, limit: RateLimit, now: () => number = Date.now): void {
  const buckets = new TokenBuckets(limit);
  app.addHook("onRequest", async (request, reply) => {
    const waitMs = buckets.take(callerOf(request).keyId, now());
    if (waitMs === 0) return;
    const retryAfter = Math.max(1, Math.ceil(waitMs / 1000));
    return reply
      .status(429)
      .header("retry-after", String(retryAfter))
      .send(errorBody("RATE_LIMITED", `rate limit of ${limit.perSecond} requests/s (burst ${limit.burst}) for this API key exceeded; retry in ${retryAfter} s`));
  });
}

export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private takesSinceSweep = 0;

  constructor(private readonly limit: RateLimit) {}

  /** Takes one token of `key`'s bucket: 0 when granted, else the milliseconds until one is due. */
  take(key: string, nowMs: number): number {
    const { perSecond, burst } = this.limit;
    const bucket = this.buckets.get(key) ?? { tokens: burst, at: nowMs };
    // A clock that steps back refills nothing rather than draining the bucket.
    bucket.tokens = Math.min(burst, bucket.tokens + (Math.max(0, nowMs - bucket.at) * perSecond) / 1000);
    bucket.at = nowMs;
    this.buckets.set(key, bucket);
    if (++this.takesSinceSweep >= 10_000) this.sweep(nowMs);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return ((1 - bucket.tokens) * 1000) / perSecond;
  }

  /** Forgets buckets that have refilled completely: they are what a new bucket would be. */
  private sweep(nowMs: number): void {
    this.takesSinceSweep = 0;
    const fullAfterMs = (this.limit.burst * 1000) / this.limit.perSecond;
    for (const [key, bucket] of this.buckets) if (nowMs - bucket.at >= fullAfterMs) this.buckets.delete(key);
  }
}
