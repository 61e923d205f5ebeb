import type { CkptClient } from "../api.js";
import { CkptApiError } from "../errors.js";
import type { CheckpointFile } from "../types.js";
import { checkpointIdOf } from "./plan.js";

/**
 * The id of a job's newest checkpoint. Asks the checkpoints endpoint (Baseten has it too) for
 * the one created last; if the server does not offer that endpoint, or lists none, falls back
 * to the file listing: the top-level folder whose newest file is newest. Files at the root
 * (checkpoint ".") count only when there is nothing else.
 */
export async function latestCheckpointId(
  client: CkptClient,
  projectId: string,
  jobId: string,
  listFiles: () => Promise<readonly CheckpointFile[]>,
): Promise<string> {
  try {
    const listed = await client.listCheckpoints(projectId, jobId);
    const checkpoints = listed.length > 1 ? listed.filter((c) => c.checkpoint_id !== ".") : listed;
    const newest = newestBy(checkpoints, (c) => Date.parse(c.created_at));
    if (newest) return newest.checkpoint_id;
  } catch (err) {
    if (!(err instanceof CkptApiError) || ![404, 405, 501].includes(err.status)) throw err;
  }
  const lastWrite = new Map<string, number>();
  for (const file of await listFiles()) {
    const id = checkpointIdOf(String(file.relative_file_name));
    lastWrite.set(id, Math.max(lastWrite.get(id) ?? -Infinity, Date.parse(file.last_modified) || 0));
  }
  const candidates = [...lastWrite].filter(([id]) => id !== "." || lastWrite.size === 1);
  const newest = newestBy(candidates, ([, time]) => time);
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
