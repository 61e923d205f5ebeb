import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { CkptClient } from "./api.js";
import { CkptApiError, apiErrorFrom } from "./errors.js";
import type { CheckpointFile } from "./types.js";

/** SHA-256 of a file, streamed (never the whole file in memory). */
export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * ckpt extension: streams one local file to `PUT .../checkpoint_files/{rank}/{name}` with its
 * length and digest, so the server rejects a short or corrupted body and keeps nothing.
 */
export async function uploadCheckpointFile(
  client: CkptClient,
  args: { projectId: string; jobId: string; nodeRank: number; relativeName: string; path: string; sha256?: string; signal?: AbortSignal },
): Promise<CheckpointFile> {
  const { size } = await stat(args.path);
  const sha256 = args.sha256 ?? (await sha256OfFile(args.path));
  const name = args.relativeName.split("/").map(encodeURIComponent).join("/");
  const path = `/v1/training_projects/${encodeURIComponent(args.projectId)}/jobs/${encodeURIComponent(args.jobId)}/checkpoint_files/${args.nodeRank}/${name}`;
  let response: Response;
  try {
    response = await client.fetch(client.apiUrl + path, {
      method: "PUT",
      headers: {
        authorization: `Api-Key ${client.apiKey}`,
        "content-type": "application/octet-stream",
        "content-length": String(size),
        "x-ckpt-sha256": sha256,
      },
      body: createReadStream(args.path, { highWaterMark: 1 << 20 }) as unknown as RequestInit["body"],
      // Required by fetch for a streamed request body.
      duplex: "half",
      signal: args.signal,
    } as RequestInit);
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    throw new CkptApiError(0, `PUT ${args.relativeName}: ${(err as Error).message}`);
  }
  if (!response.ok) throw await apiErrorFrom(response, `upload ${args.relativeName}`);
  return (await response.json()) as CheckpointFile;
}
