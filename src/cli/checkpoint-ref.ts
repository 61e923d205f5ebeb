import type { CkptClient } from "../client/api.js";
import { resolveCheckpointRef } from "../client/checkpoint-ref.js";
import { CliError } from "./common.js";

/**
 * What `--checkpoint` (and each side of `ckpt diff`) names, for commands that read one checkpoint
 * (inspect, diff): an id, `latest` (also when absent) or `@NAME`, resolved by the SDK's one
 * resolver (src/client/checkpoint-ref.ts), so an alias picks its own job and needs no `--job`.
 */
export async function resolveCheckpointTarget(
  client: CkptClient,
  projectRef: string,
  jobRef: string | undefined,
  ref: string | undefined,
): Promise<{ projectId: string; jobId: string; checkpointId: string }> {
  const name = ref ?? "latest";
  if (name === "" || name === "@" || (!name.startsWith("@") && name.includes("/")))
    throw new CliError(`a checkpoint is a top-level folder name, latest or @ALIAS (got '${name}')`);
  const project = await client.resolveProject(projectRef);
  const resolved = await resolveCheckpointRef(client, project.id, name, () =>
    jobRef ? client.getJob(project.id, jobRef) : client.latestJob(project.id),
  );
  if (jobRef && name.startsWith("@") && name !== "@best" && resolved.jobId !== jobRef)
    throw new CliError(`${name} points at job ${resolved.jobId}, not --job ${jobRef}`);
  return { projectId: project.id, jobId: resolved.jobId, checkpointId: resolved.checkpointId };
}
