import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { CkptClient } from "./api.js";
import { CkptApiError } from "./errors.js";
import type { CheckpointFile } from "./types.js";
import { setTimeout as sleep } from "node:timers/promises";
import { backoffDelay, isRetryableStatus, parseRetryAfter } from "./download/retry.js";
import { DEFAULT_RETRY_POLICY } from "./download/types.js";
import { headerOf, putError, sendPut, sha256OfFile } from "./upload.js";

interface UploadPlan {
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
 *
 * Without a `sha256` the file is hashed while it is sent (a one-part file from the part's own
 * stream; a larger one by a sequential read beside the parallel parts) and the digest is
 * declared at completion, which the server verifies before anything is visible.
 */
export async function uploadFileDirect(
  client: CkptClient,
  args: {
    projectId: string;
    jobId: string;
    nodeRank: number;
    relativeName: string;
    path: string;
    sha256?: string;
    /** Parts of this file in flight at once (default 4). */
    partConcurrency?: number;
    /**
     * Called instead of sending the parts when they would go through the API server anyway (the
     * embedded store), where one streamed PUT of the file is cheaper; the upload begun is aborted.
     */
    whenPartsViaApiServer?: () => Promise<CheckpointFile>;
    signal?: AbortSignal;
  },
): Promise<CheckpointFile> {
  const { size } = await stat(args.path);
  const jobPath = `/v1/training_projects/${encodeURIComponent(args.projectId)}/jobs/${encodeURIComponent(args.jobId)}`;
  const plan = await client.request<UploadPlan>("POST", `${jobPath}/uploads`, {
    body: { node_rank: args.nodeRank, relative_file_name: args.relativeName, size_bytes: size, sha256: args.sha256 ?? null },
    signal: args.signal,
  });
  if (plan.parts_via_api_server && args.whenPartsViaApiServer) {
    await client.request("DELETE", `${jobPath}/uploads/${plan.upload_id}`).catch(() => {});
    return args.whenPartsViaApiServer();
  }
  try {
    // One part: its own stream is the whole file, in order, so it is hashed as it is sent.
    const hashOnePart = args.sha256 === undefined && plan.parts.length === 1;
    let digest: Promise<string> | null = args.sha256 === undefined && !hashOnePart ? sha256OfFile(args.path) : null;
    // Not left unhandled if a part fails first.
    digest?.catch(() => {});
    const etags = new Map<number, string>();
    let next = 0;
    const worker = async () => {
      while (next < plan.parts.length) {
        const part = plan.parts[next++]!;
        const start = (part.part_number - 1) * plan.part_size_bytes;
        const sent = await putPart(client, args.path, part.url, start, part.size_bytes, args.signal, hashOnePart);
        etags.set(part.part_number, sent.etag);
        if (sent.sha256 !== null) digest = Promise.resolve(sent.sha256);
      }
    };
    await Promise.all(Array.from({ length: Math.min(args.partConcurrency ?? 4, plan.parts.length) }, worker));
    const sha256 = args.sha256 ?? (await digest!);
    return await client.request<CheckpointFile>("POST", `${jobPath}/uploads/${plan.upload_id}/complete`, {
      body: { parts: [...etags].map(([part_number, etag]) => ({ part_number, etag })), sha256 },
      signal: args.signal,
    });
  } catch (err) {
    await client.request("DELETE", `${jobPath}/uploads/${plan.upload_id}`).catch(() => {});
    throw err;
  }
}

/**
 * PUTs one byte range of the file to a presigned URL, retrying network errors, 5xx and 429
 * (honouring Retry-After) with backoff.
 * With `hashIt`, also answers the SHA-256 of the bytes the successful attempt sent.
 */
async function putPart(
  client: CkptClient,
  path: string,
  url: string,
  start: number,
  length: number,
  signal: AbortSignal | undefined,
  hashIt: boolean,
): Promise<{ etag: string; sha256: string | null }> {
  for (let attempt = 1; ; attempt++) {
    let failure: CkptApiError;
    let retryAfterMs: number | undefined;
    const attemptHash = hashIt ? createHash("sha256") : null;
    const body = length === 0 ? Buffer.alloc(0) : createReadStream(path, { start, end: start + length - 1, highWaterMark: 1 << 20 });
    try {
      const response = await sendPut(client, url, { "content-length": String(length) }, body, {
        signal,
        onChunk: attemptHash ? (chunk) => attemptHash.update(chunk) : undefined,
      });
      if (response.status >= 200 && response.status <= 299) {
        const etag = response.headers.etag;
        if (!etag) throw new CkptApiError(502, "the blob store returned no ETag for an uploaded part");
        return { etag: Array.isArray(etag) ? etag[0]! : etag, sha256: attemptHash?.digest("hex") ?? null };
      }
      failure = await putError(response, "upload part");
      retryAfterMs = parseRetryAfter(headerOf(response, "retry-after"));
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      failure = err instanceof CkptApiError ? err : new CkptApiError(0, `upload part: ${(err as Error).message}`);
    }
    // Only this part is sent again: the parts already stored stay.
    if (!isRetryableStatus(failure.status) || attempt >= DEFAULT_RETRY_POLICY.attempts) throw failure;
    await sleep(backoffDelay(attempt, DEFAULT_RETRY_POLICY, retryAfterMs), undefined, { signal });
  }
}
