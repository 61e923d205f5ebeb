import { resolve } from "node:path";
import type { CkptClient } from "./api.js";
import { CkptApiError } from "./errors.js";
import { downloadCheckpoint } from "./download/download-checkpoint.js";
import type { DownloadEvent, DownloadSummary } from "./download/types.js";

/** A job's `runtime.load_checkpoint_config`, resolved by the server (GET …/load_checkpoint_config). */
export interface LoadCheckpointPlan {
  enabled: boolean;
  download_folder: string;
  checkpoints: {
    typ: "baseten_latest_checkpoint" | "baseten_named_checkpoint";
    training_project_id: string;
    training_job_id: string;
    /** null: the job's latest checkpoint. */
    checkpoint_id: string | null;
  }[];
}

export interface LoadedCheckpoints {
  /** Absolute download folder: what BT_LOAD_CHECKPOINT_DIR names. */
  dir: string;
  downloads: DownloadSummary[];
}

/** Loading stopped: a checkpoint could not be found, or some of its files did not download. */
export class LoadCheckpointError extends Error {
  override readonly name = "LoadCheckpointError";
}

/** The server's resolution of the job's config; a missing checkpoint (422) is a LoadCheckpointError with the server's words. */
export async function getLoadCheckpointPlan(client: CkptClient, projectId: string, jobId: string): Promise<LoadCheckpointPlan> {
  try {
    return await client.request<LoadCheckpointPlan>(
      "GET",
      `/v1/training_projects/${encodeURIComponent(projectId)}/jobs/${encodeURIComponent(jobId)}/load_checkpoint_config`,
    );
  } catch (err) {
    if (err instanceof CkptApiError && err.status === 422) {
      const serverWords = /^GET \S+: (.*) \(HTTP 422\)$/s.exec(err.message)?.[1];
      throw new LoadCheckpointError(serverWords ?? err.message);
    }
    // The job was just read, so a 404 here is a server without this ckpt extension (Baseten's own API): nothing to load.
    if (err instanceof CkptApiError && (err.status === 404 || err.status === 405 || err.status === 501))
      return { enabled: false, download_folder: "", checkpoints: [] };
    throw err;
  }
}

/**
 * Downloads the checkpoints a job's plan names, as Baseten does before the training code starts:
 * this node's rank only, into `<download_folder>/rank-<node_rank>/<relative_file_name>`, with the
 * download engine (resumed and verified). Null when the job loads nothing.
 */
export async function loadCheckpoints(args: {
  client: CkptClient;
  plan: LoadCheckpointPlan;
  nodeRank: number;
  onProgress?: (event: DownloadEvent) => void;
  signal?: AbortSignal;
}): Promise<LoadedCheckpoints | null> {
  const { client, plan, nodeRank } = args;
  if (!plan.enabled) return null;
  const dir = resolve(plan.download_folder);
  const downloads: DownloadSummary[] = [];
  for (const checkpoint of plan.checkpoints) {
    const summary = await downloadCheckpoint({
      client,
      projectId: checkpoint.training_project_id,
      jobId: checkpoint.training_job_id,
      checkpoint: checkpoint.checkpoint_id ?? "latest",
      nodeRanks: [nodeRank],
      dest: dir,
      onProgress: args.onProgress,
      signal: args.signal,
    });
    if (summary.failed.length > 0) {
      const first = summary.failed[0]!;
      throw new LoadCheckpointError(
        `${summary.failed.length} file(s) of checkpoint ${summary.checkpoint ?? "?"} of job ${checkpoint.training_job_id} did not download ` +
          `(first: ${first.file.relativeFileName}: ${first.error})`,
      );
    }
    downloads.push(summary);
  }
  return { dir, downloads };
}
