import { stat } from "node:fs/promises";
import type { CkptClient } from "../api.js";
import type { RetryPolicy } from "../download/types.js";
import type { CheckpointFile } from "../types.js";
import { uploadFileDirect } from "./direct-upload.js";
import { SMALL_FILE_BYTES, uploadCheckpointFile } from "./streamed-upload.js";
import type { FileUploadTarget } from "./target.js";

/** How a file's bytes went: straight to the blob store, or through the API server. */
export type UploadPath = "direct" | "api-server";

/**
 * The per-file choice of path, shared by every file of one engine. A server answers each
 * begin-upload with `parts_via_api_server`: on the embedded store the parts would pass through
 * the API server anyway, and one streamed PUT per file measured faster (fewer requests, no
 * re-read of the file at completion), so once a server has said so every later file streams.
 * On S3 the parts go straight to the store.
 */
export class UploadRoute {
  private partsViaApiServer = false;

  /** `viaServer`: stream every file through the API server, never the direct protocol. */
  constructor(readonly viaServer = false) {}

  /**
   * A small file goes in one PUT through the server: one request instead of three (begin, part,
   * complete), and the server does a third of the work; a large one goes direct where it can.
   */
  streams(size: number): boolean {
    return this.viaServer || this.partsViaApiServer || size <= SMALL_FILE_BYTES;
  }

  learnPartsViaApiServer(): void {
    this.partsViaApiServer = true;
  }
}

export interface UploadFileOptions {
  /** Shared by the files of one engine; a fresh one per call otherwise. */
  route?: UploadRoute;
  /** The file's digest, when the caller already has it (otherwise hashed as or before it is sent). */
  sha256?: string;
  /** Per request (a part, or the one streamed PUT); missing fields take DEFAULT_RETRY_POLICY's. */
  retry?: Partial<RetryPolicy>;
  /** Parts of one direct upload in flight at once (default 4). */
  partConcurrency?: number;
  onRetry?: (message: string, delayMs: number) => void;
  signal?: AbortSignal;
}

/**
 * Uploads one local file as a checkpoint file, directly to the blob store where the server offers
 * it, streamed through the API server where that is cheaper; the server verifies size and digest
 * either way before the file is listed. Failed requests are retried (a direct upload from the
 * part that failed); what fails for good is thrown as a CkptApiError.
 */
export async function uploadFile(
  client: CkptClient,
  target: FileUploadTarget,
  options: UploadFileOptions = {},
): Promise<{ file: CheckpointFile; path: UploadPath }> {
  const route = options.route ?? new UploadRoute();
  const { size } = await stat(target.path);
  const common = { ...target, sha256: options.sha256, retry: options.retry, onRetry: options.onRetry, signal: options.signal };
  if (route.streams(size)) return { file: await uploadCheckpointFile(client, common), path: "api-server" };
  let path: UploadPath = "direct";
  const file = await uploadFileDirect(client, {
    ...common,
    partConcurrency: options.partConcurrency,
    whenPartsViaApiServer: () => {
      route.learnPartsViaApiServer();
      path = "api-server";
      return uploadCheckpointFile(client, common);
    },
  });
  return { file, path };
}
