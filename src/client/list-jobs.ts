import { clientFor, type Connection } from "./connection.js";
import type { TrainingJob } from "./types.js";

/** A project's training jobs, newest first. */
export async function* listJobs(
  params: Connection & {
    /** Training project id. */
    projectId: string;
  },
): AsyncGenerator<TrainingJob> {
  yield* await clientFor(params).listJobs(params.projectId);
}
