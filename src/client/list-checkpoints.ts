import { clientFor, type Connection } from "./connection.js";
import type { TrainingJobCheckpoint } from "./types.js";

/** A job's checkpoints (with their sizes), in the order the server lists them. */
export async function* listCheckpoints(
  params: Connection & {
    /** Training project id. */
    projectId: string;
    /** Training job id. */
    jobId: string;
  },
): AsyncGenerator<TrainingJobCheckpoint> {
  yield* await clientFor(params).listCheckpoints(params.projectId, params.jobId);
}
