import type { CkptClient } from "../api.js";
import { CkptApiError } from "../errors.js";
import type { CheckpointFile } from "../types.js";
import { checkpointIdOf } from "../../domain/checkpoint-id.js";

/**
 * The id of a job's newest checkpoint. Asks the checkpoints endpoint (Baseten has it too) for
 * the one created last, among the COMPLETE ones where the server reports a `state` (ckpt does;
 * Baseten does not); if the server does not offer that endpoint, or lists none, falls back to the
 * file listing: the top-level folder whose newest file is newest. Root files belong to no checkpoint.
 */
export async function latestCheckpointId(
  client: CkptClient,
  projectId: string,
  jobId: string,
  listFiles: () => Promise<readonly CheckpointFile[]>,
): Promise<string> {
  try {
    const listed = await client.listCheckpoints(projectId, jobId);
    if (listed.some((c) => typeof c.state === "string")) {
      const newest = newestBy(listed.filter((c) => c.state === "COMPLETE"), (c) => Date.parse(c.created_at));
      if (newest) return newest.checkpoint_id;
      throw new CkptApiError(404, `training job ${jobId} has no COMPLETE checkpoint (${listed.length} still writing or incomplete)`);
    }
    const newest = newestBy(listed, (c) => Date.parse(c.created_at));
    if (newest) return newest.checkpoint_id;
  } catch (err) {
    if (!(err instanceof CkptApiError) || ![404, 405, 501].includes(err.status)) throw err;
  }
  const lastWrite = new Map<string, number>();
  for (const file of await listFiles()) {
    const id = checkpointIdOf(String(file.relative_file_name));
    if (id === null) continue;
    lastWrite.set(id, Math.max(lastWrite.get(id) ?? -Infinity, Date.parse(file.last_modified) || 0));
  }
  const newest = newestBy([...lastWrite], ([, time]) => time);
  if (!newest) throw new CkptApiError(404, `training job ${jobId} has no checkpoints`);
  return newest[0];
}

/** The item with the greatest key; on a tie, the later one (lists run oldest first). */
function newestBy<T>(items: readonly T[], key: (item: T) => number): T | undefined {
  let best: T | undefined;
  let bestKey = -Infinity;
  for (const item of items) {
    const k = key(item);
    const comparable = Number.isNaN(k) ? -Infinity : k;
    if (comparable >= bestKey) {
      best = item;
      bestKey = comparable;
    }
  }
  return best;
}
