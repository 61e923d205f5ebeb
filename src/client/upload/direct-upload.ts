import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { CkptClient } from "../api.js";
import { runPool } from "../download/pool.js";
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from "../download/types.js";
import { setTimeout as sleep } from "node:timers/promises";
import { backoffDelay, isRetryableStatus } from "../download/retry.js";
import { CkptApiError } from "../errors.js";
import type { CheckpointFile } from "../types.js";
import { sha256OfFile } from "./digest.js";
import { putRetrying, requestRetrying, type PutRetryOptions } from "./put.js";
import { jobPath, type FileUploadTarget } from "./target.js";

/** The begin-upload answer (POST .../uploads). */
export interface UploadPlan {
  upload_id: string;
  part_size_bytes: number;
  parts: { part_number: number; url: string; size_bytes: number }[];
  expires_at: string;
  /** ckpt: the part URLs are the API server's own (absent from older servers). */
  parts_via_api_server?: boolean;
}

/**
 * ckpt extension: uploads one file through the direct-upload protocol — the bytes go straight
 * to the blob store (S3, or the server's own upload route), in parallel parts, and the server
 * verifies size and digest before the file becomes visible. An upload that fails is aborted.
 * A part that fails (a cut connection, 5xx, 429 after its Retry-After) is sent again alone:
 * the parts already stored stay.
 *
 * Without a `sha256` the file is hashed while it is sent (a one-part file from the part's own
 * stream; a larger one by a sequential read beside the parallel parts) and the digest is
 * declared at completion, which the server verifies before anything is visible.
 */
export async function uploadFileDirect(
  client: CkptClient,
  args: FileUploadTarget & {
    sha256?: string;
    /** Parts of this file in flight at once (default 4). */
    partConcurrency?: number;
    /**
     * Called instead of sending the parts when they would go through the API server anyway (the
     * embedded store), where one streamed PUT of the file is cheaper; the upload begun is aborted.
     */
    whenPartsViaApiServer?: () => Promise<CheckpointFile>;
    signal?: AbortSignal;
    /** Per request (a part, a begin, a completion); missing fields take DEFAULT_RETRY_POLICY's. */
    retry?: Partial<RetryPolicy>;
    onRetry?: (message: string, delayMs: number) => void;
  },
): Promise<CheckpointFile> {
  const { size } = await stat(args.path);
  const job = jobPath(args);
  const retry: PutRetryOptions = { policy: { ...DEFAULT_RETRY_POLICY, ...args.retry }, signal: args.signal, onRetry: args.onRetry };
  // A completion that fails discards the upload on the server; when it failed on the server's
  // or the network's side (or its answer was lost), the file is sent again from a new upload.
  for (let tries = 1; ; tries++) {
    const begun = await requestRetrying(
      () =>
        client.request<UploadPlan>("POST", `${job}/uploads`, {
          body: { node_rank: args.nodeRank, relative_file_name: args.relativeName, size_bytes: size, sha256: args.sha256 ?? null },
          signal: args.signal,
        }),
      retry,
    );
    if (begun.parts_via_api_server && args.whenPartsViaApiServer) {
      await client.request("DELETE", `${job}/uploads/${begun.upload_id}`).catch(() => {});
      return args.whenPartsViaApiServer();
    }
    const sent = await sendParts(client, job, args, begun, retry);
    try {
      return await client.request<CheckpointFile>("POST", `${job}/uploads/${begun.upload_id}/complete`, {
        body: { parts: sent.parts, sha256: sent.sha256 },
        signal: args.signal,
      });
    } catch (err) {
      await client.request("DELETE", `${job}/uploads/${begun.upload_id}`).catch(() => {});
      if (!(err instanceof CkptApiError) || !isRetryableStatus(err.status) || tries >= retry.policy.attempts) throw err;
      const delayMs = backoffDelay(tries, retry.policy);
      args.onRetry?.(err.message, delayMs);
      await sleep(delayMs, undefined, { signal: args.signal });
    }
  }
}

/** Sends every part of a begun upload (aborting it if one fails for good) and answers what completes it. */
async function sendParts(
  client: CkptClient,
  job: string,
  args: { path: string; sha256?: string; partConcurrency?: number; signal?: AbortSignal },
  plan: UploadPlan,
  retry: PutRetryOptions,
): Promise<{ parts: { part_number: number; etag: string }[]; sha256: string }> {
  try {
    // One part: its own stream is the whole file, in order, so it is hashed as it is sent.
    const hashOnePart = args.sha256 === undefined && plan.parts.length === 1;
    let digest: Promise<string> | null = args.sha256 === undefined && !hashOnePart ? sha256OfFile(args.path) : null;
    // Not left unhandled if a part fails first.
    digest?.catch(() => {});
    const etags = new Map<number, string>();
    await runPool(plan.parts, args.partConcurrency ?? 4, async (part) => {
      const start = (part.part_number - 1) * plan.part_size_bytes;
      const sent = await putPart(client, args.path, part, start, hashOnePart, retry);
      etags.set(part.part_number, sent.etag);
      if (sent.sha256 !== null) digest = Promise.resolve(sent.sha256);
    });
    const sha256 = args.sha256 ?? (await digest!);
    return { parts: [...etags].map(([part_number, etag]) => ({ part_number, etag })), sha256 };
  } catch (err) {
    await client.request("DELETE", `${job}/uploads/${plan.upload_id}`).catch(() => {});
    throw err;
  }
}

/**
 * PUTs one byte range of the file to its part URL. With `hashIt`, also answers the SHA-256 of
 * the bytes the successful try sent.
 */
async function putPart(
  client: CkptClient,
  path: string,
  part: { url: string; size_bytes: number },
  start: number,
  hashIt: boolean,
  retry: PutRetryOptions,
): Promise<{ etag: string; sha256: string | null }> {
  const length = part.size_bytes;
  let attemptHash: Hash | null = null;
  const response = await putRetrying(
    client,
    part.url,
    { "content-length": String(length) },
    "upload part",
    () => {
      const hash = hashIt ? createHash("sha256") : null;
      attemptHash = hash;
      const body = length === 0 ? Buffer.alloc(0) : createReadStream(path, { start, end: start + length - 1, highWaterMark: 1 << 20 });
      return { body, onChunk: hash ? (chunk) => hash.update(chunk) : undefined };
    },
    retry,
  );
  const etag = response.headers.etag;
  if (!etag) throw new CkptApiError(502, "the blob store returned no ETag for an uploaded part");
  return { etag: Array.isArray(etag) ? etag[0]! : etag, sha256: (attemptHash as Hash | null)?.digest("hex") ?? null };
}
