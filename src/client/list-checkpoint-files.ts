import { clientFor, type Connection } from "./connection.js";
import type { CheckpointFile } from "./types.js";

/**
 * Every checkpoint file of a job, with its presigned URL, page by page as the server sends
 * them: follows `next_page_token` and stops on a null token or an empty page.
 *
 *   for await (const file of listCheckpointFiles({ apiUrl, apiKey, projectId, jobId })) ...
 */
export async function* listCheckpointFiles(
  params: Connection & {
    /** Training project id. */
    projectId: string;
    /** Training job id. */
    jobId: string;
    /** Files per request (the server may clamp it); default 1000. */
    pageSize?: number;
    /** Cancels the listing between and during requests. */
    signal?: AbortSignal;
  },
): AsyncGenerator<CheckpointFile> {
  yield* clientFor(params).listCheckpointFiles(params);
}
