import { clientFor, type Connection } from "./connection.js";
import type { TrainingJob } from "./types.js";

/** One training job; a CkptApiError with status 404 when there is no such job. */
export async function getJob(
  params: Connection & {
    /** Training project id. */
    projectId: string;
    /** Training job id. */
    jobId: string;
  },
): Promise<TrainingJob> {
  return clientFor(params).getJob(params.projectId, params.jobId);
}
