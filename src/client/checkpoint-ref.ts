import type { CkptClient } from "./api.js";
import { CkptApiError } from "./errors.js";
import type { TrainingJob, TrainingJobCheckpoint } from "./types.js";
import { latestCheckpointId } from "./download/latest-checkpoint.js";

/**
 * What `--checkpoint` names, resolved to one (job, checkpoint):
 * - `@NAME`: a project alias, in whichever job it points at (no job needed); `@best` is the
 *   job's derived best (from trainer_state.json), so it takes the job (default: the latest);
 * - `latest`: the job's newest COMPLETE checkpoint (on Baseten, which has no states, the newest);
 * - anything else: that checkpoint of the job.
 */
export async function resolveCheckpointRef(
  client: CkptClient,
  projectId: string,
  ref: string,
  job: () => Promise<TrainingJob>,
): Promise<{ jobId: string; checkpointId: string; checkpoint: TrainingJobCheckpoint | null }> {
  if (ref.startsWith("@")) {
    const name = ref.slice(1);
    if (name === "best") {
      const { id } = await job();
      const checkpoints = await client.listCheckpoints(projectId, id);
      const best = checkpoints.find((c) => c.aliases?.includes("best"));
      if (!best) throw new CkptApiError(404, `job ${id} reports no best checkpoint (trainer_state.json names none)`);
      return { jobId: id, checkpointId: best.checkpoint_id, checkpoint: best };
    }
    const alias = (await client.listAliases(projectId)).find((a) => a.name === name);
    if (!alias) throw new CkptApiError(404, `no alias '${name}' in this project`);
    const checkpoint = await findCheckpoint(client, projectId, alias.training_job_id, alias.checkpoint_id);
    return { jobId: alias.training_job_id, checkpointId: alias.checkpoint_id, checkpoint };
  }
  const { id } = await job();
  const checkpointId = ref === "latest" ? await latestCheckpointId(client, projectId, id, async () => []) : ref;
  return { jobId: id, checkpointId, checkpoint: await findCheckpoint(client, projectId, id, checkpointId) };
}

/** The checkpoint's listing entry, or null when the server has no checkpoints endpoint. */
async function findCheckpoint(client: CkptClient, projectId: string, jobId: string, checkpointId: string): Promise<TrainingJobCheckpoint | null> {
  let listed: TrainingJobCheckpoint[];
  try {
    listed = await client.listCheckpoints(projectId, jobId);
  } catch (err) {
    if (err instanceof CkptApiError && [404, 405, 501].includes(err.status) && !/training job/.test(err.message)) return null;
    throw err;
  }
  const found = listed.find((c) => c.checkpoint_id === checkpointId);
  if (!found) throw new CkptApiError(404, `job ${jobId} has no checkpoint '${checkpointId}'`);
  return found;
}
