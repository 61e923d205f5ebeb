import type { MetadataStore } from "../stores/metadata/store.js";
import type { BlobStore } from "../stores/blobs/store.js";

export interface DependencyCheck {
  ok: boolean;
  /** Why not, when not ok (the error's message; never credentials). */
  error?: string;
  latencyMs: number;
}

export interface Readiness {
  ready: boolean;
  checks: { metadata: DependencyCheck; blobs: DependencyCheck };
}

/**
 * Whether this server can do its work now: a query on the metadata store and a cheap call on the
 * blob store, in parallel, each bounded by `timeoutMs` so a hung dependency answers "not ready"
 * instead of hanging the probe.
 */
export async function checkReadiness(metadata: MetadataStore, blobs: BlobStore, timeoutMs: number): Promise<Readiness> {
  const [metadataCheck, blobsCheck] = await Promise.all([
    bounded(() => metadata.ping(), timeoutMs),
    bounded((signal) => blobs.checkHealth(signal), timeoutMs),
  ]);
  return { ready: metadataCheck.ok && blobsCheck.ok, checks: { metadata: metadataCheck, blobs: blobsCheck } };
}

async function bounded(check: (signal: AbortSignal) => Promise<void>, timeoutMs: number): Promise<DependencyCheck> {
  const started = performance.now();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  try {
    await raceAbort(check(controller.signal), controller.signal);
    return { ok: true, latencyMs: Math.round(performance.now() - started) };
  } catch (err) {
    const message = controller.signal.aborted ? (controller.signal.reason as Error).message : err instanceof Error ? err.message : String(err);
    return { ok: false, error: message, latencyMs: Math.round(performance.now() - started) };
  } finally {
    clearTimeout(timer);
  }
}

/** `work`, or a rejection as soon as `signal` aborts (the work itself may go on; its result is ignored). */
function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (v) => (signal.removeEventListener("abort", onAbort), resolve(v)),
      (e) => (signal.removeEventListener("abort", onAbort), reject(e)),
    );
  });
}
