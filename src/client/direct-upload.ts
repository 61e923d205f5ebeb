import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { CkptClient } from "./api.js";
import { CkptApiError, apiErrorFrom } from "./errors.js";
import type { CheckpointFile } from "./types.js";

interface UploadPlan {
  upload_id: string;
  part_size_bytes: number;
  parts: { part_number: number; url: string; size_bytes: number }[];
  expires_at: string;
}

const PART_ATTEMPTS = 4;

/**
 * ckpt extension: uploads one file through the direct-upload protocol — the bytes go straight
 * to the blob store (S3, or the server's own upload route), in parallel parts, and the server
 * verifies size and digest before the file becomes visible. An upload that fails is aborted.
 */
export async function uploadFileDirect(
  client: CkptClient,
  args: {
    projectId: string;
    jobId: string;
    nodeRank: number;
    relativeName: string;
    path: string;
    sha256: string;
    /** Parts of this file in flight at once (default 4). */
    partConcurrency?: number;
    signal?: AbortSignal;
  },
): Promise<CheckpointFile> {
  const { size } = await stat(args.path);
  const jobPath = `/v1/training_projects/${encodeURIComponent(args.projectId)}/jobs/${encodeURIComponent(args.jobId)}`;
  const plan = await client.request<UploadPlan>("POST", `${jobPath}/uploads`, {
    body: { node_rank: args.nodeRank, relative_file_name: args.relativeName, size_bytes: size, sha256: args.sha256 },
    signal: args.signal,
  });
  try {
    const etags = new Map<number, string>();
    let next = 0;
    const worker = async () => {
      while (next < plan.parts.length) {
        const part = plan.parts[next++]!;
        const start = (part.part_number - 1) * plan.part_size_bytes;
        etags.set(part.part_number, await putPart(client, args.path, part.url, start, part.size_bytes, args.signal));
      }
    };
    await Promise.all(Array.from({ length: Math.min(args.partConcurrency ?? 4, plan.parts.length) }, worker));
    return await client.request<CheckpointFile>("POST", `${jobPath}/uploads/${plan.upload_id}/complete`, {
      body: { parts: [...etags].map(([part_number, etag]) => ({ part_number, etag })) },
      signal: args.signal,
    });
  } catch (err) {
    await client.request("DELETE", `${jobPath}/uploads/${plan.upload_id}`).catch(() => {});
    throw err;
  }
}

/** PUTs one byte range of the file to a presigned URL, retrying network errors and 5xx/429. */
async function putPart(client: CkptClient, path: string, url: string, start: number, length: number, signal?: AbortSignal): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    let failure: CkptApiError;
    try {
      const response = await client.fetch(url, {
        method: "PUT",
        headers: { "content-length": String(length) },
        body: (length === 0 ? Buffer.alloc(0) : createReadStream(path, { start, end: start + length - 1, highWaterMark: 1 << 20 })) as unknown as RequestInit["body"],
        duplex: "half",
        signal,
      } as RequestInit);
      if (response.ok) {
        await response.arrayBuffer();
        const etag = response.headers.get("etag");
        if (!etag) throw new CkptApiError(0, "the blob store returned no ETag for an uploaded part");
        return etag;
      }
      failure = await apiErrorFrom(response, "upload part");
      if (response.status < 500 && response.status !== 429) throw failure;
    } catch (err) {
      if ((err as Error).name === "AbortError" || (err instanceof CkptApiError && err.status > 0)) throw err;
      failure = err instanceof CkptApiError ? err : new CkptApiError(0, `upload part: ${(err as Error).message}`);
    }
    if (attempt >= PART_ATTEMPTS) throw failure;
    await new Promise((r) => setTimeout(r, 200 * 2 ** attempt * (0.5 + Math.random())));
  }
}
