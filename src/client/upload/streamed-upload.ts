import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import type { CkptClient } from "../api.js";
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from "../download/types.js";
import { CkptApiError } from "../errors.js";
import type { CheckpointFile } from "../types.js";
import { sha256OfFile } from "./digest.js";
import { putRetrying } from "./put.js";
import { checkpointFilePath, type FileUploadTarget } from "./target.js";

/** Files up to this size are read whole into memory and hashed from there: one read, no stream. */
export const SMALL_FILE_BYTES = 4 << 20;

/**
 * ckpt extension: streams one local file to `PUT .../checkpoint_files/{rank}/{name}` with its
 * length and digest, so the server rejects a short or corrupted body and keeps nothing.
 * Without a `sha256`, a file up to SMALL_FILE_BYTES is read once into memory and hashed from
 * there; a larger one is hashed first (the digest has to lead the body). A failed PUT is sent
 * again whole (the server kept nothing of it).
 */
export async function uploadCheckpointFile(
  client: CkptClient,
  args: FileUploadTarget & {
    sha256?: string;
    signal?: AbortSignal;
    /** Network errors, 5xx and 429 (after its Retry-After) are retried; default DEFAULT_RETRY_POLICY. */
    retry?: Partial<RetryPolicy>;
    onRetry?: (message: string, delayMs: number) => void;
  },
): Promise<CheckpointFile> {
  const { size } = await stat(args.path);
  let whole: Buffer | null = null;
  let sha256 = args.sha256;
  if (sha256 === undefined && size <= SMALL_FILE_BYTES) {
    whole = await readFile(args.path);
    // The file changed between stat and read; the server refuses a length mismatch anyway, but say why.
    if (whole.length !== size) throw new CkptApiError(0, `${args.relativeName} changed while it was being read`);
    sha256 = createHash("sha256").update(whole).digest("hex");
  }
  sha256 ??= await sha256OfFile(args.path);
  const headers = {
    authorization: `Api-Key ${client.apiKey}`,
    "content-type": "application/octet-stream",
    "content-length": String(size),
    "x-ckpt-sha256": sha256,
  };
  const response = await putRetrying(
    client,
    client.apiUrl + checkpointFilePath(args),
    headers,
    `upload ${args.relativeName}`,
    () => ({ body: whole ?? createReadStream(args.path, { highWaterMark: 1 << 20 }) }),
    { policy: { ...DEFAULT_RETRY_POLICY, ...args.retry }, signal: args.signal, onRetry: args.onRetry },
  );
  return JSON.parse(response.body.toString("utf8")) as CheckpointFile;
}
