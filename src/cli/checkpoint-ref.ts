import type { CkptClient } from "../client/api.js";
import { latestCheckpointId } from "../client/download/latest-checkpoint.js";
import type { CheckpointFile } from "../client/types.js";
import { CliError } from "./common.js";

/**
 * What `--checkpoint` (and each side of `ckpt diff`) names: a checkpoint id, or `latest` (also
 * when absent). The one place a checkpoint reference is turned into an id: `@alias` is refused
 * here until the server resolves aliases.
 */
export async function resolveCheckpointRef(client: CkptClient, projectId: string, jobId: string, ref: string | undefined): Promise<string> {
  if (ref === undefined || ref === "latest") {
    const listFiles = async () => {
      const files: CheckpointFile[] = [];
      for await (const f of client.listCheckpointFiles({ projectId, jobId })) files.push(f);
      return files;
    };
    return latestCheckpointId(client, projectId, jobId, listFiles);
  }
  if (ref.startsWith("@")) throw new CliError(`checkpoint alias '${ref}': this server or ckpt version resolves no aliases; name the checkpoint`);
  if (ref === "" || ref.includes("/")) throw new CliError(`a checkpoint is a top-level folder name (got '${ref}')`);
  return ref;
}
