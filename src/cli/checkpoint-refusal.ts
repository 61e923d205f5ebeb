import type { CkptClient } from "../client/api.js";
import { checkpointIdOf, nameInCheckpoint } from "../domain/checkpoint-id.js";
import { COMPLETION_MARKERS, isSafetensorsIndex } from "../domain/checkpoint-markers.js";
import { shardsOfIndex } from "../domain/checkpoints.js";
import type { CheckpointFile, TrainingJobCheckpoint } from "../client/types.js";
import { printable } from "./output.js";

/**
 * Why a checkpoint that is not COMPLETE should not be downloaded, in words a user can act on:
 * what is there, which shards a safetensors index names that are missing, and which marker
 * would complete it. Reads the job's listing and, if there is one, the index (a small JSON).
 */
export async function describeNotComplete(
  client: CkptClient,
  projectId: string,
  jobId: string,
  checkpoint: TrainingJobCheckpoint,
): Promise<string> {
  const files: CheckpointFile[] = [];
  for await (const file of client.listCheckpointFiles({ projectId, jobId }))
    if (checkpointIdOf(file.relative_file_name) === checkpoint.checkpoint_id) files.push(file);
  const id = printable(checkpoint.checkpoint_id);
  const lines = [
    checkpoint.state === "INCOMPLETE"
      ? `checkpoint ${id} of job ${jobId} is INCOMPLETE: its job ended before it completed`
      : `checkpoint ${id} of job ${jobId} is still WRITING: files may still be arriving`,
    `  ${files.length} files so far${files.length ? `, the newest ${printable(newest(files).relative_file_name)} at ${newest(files).last_modified}` : ""}`,
  ];
  const present = new Set(files.map((f) => `${f.node_rank}/${f.relative_file_name}`));
  for (const index of files.filter((f) => isSafetensorsIndex(f.relative_file_name))) {
    const shards = await fetchShards(index);
    if (shards === null) continue;
    const folder = index.relative_file_name.slice(0, index.relative_file_name.lastIndexOf("/") + 1);
    const missing = shards.map((s) => folder + s).filter((name) => !present.has(`${index.node_rank}/${name}`));
    lines.push(
      missing.length
        ? `  missing (named by ${printable(index.relative_file_name)}, rank ${index.node_rank}): ${missing.slice(0, 20).map(printable).join(", ")}${missing.length > 20 ? ` and ${missing.length - 20} more` : ""}`
        : `  every shard ${printable(index.relative_file_name)} names is present; one may still be arriving or short of its declared size`,
    );
  }
  const markers = files.filter((f) => COMPLETION_MARKERS.has(nameInCheckpoint(f.relative_file_name) ?? ""));
  if (markers.length === 0 && checkpoint.state !== "INCOMPLETE")
    lines.push(`  no completion marker yet (${[...COMPLETION_MARKERS].join(", ")}, a safetensors index, or DeepSpeed's latest)`);
  lines.push(`download it anyway with --allow-partial, or mark it complete: ckpt checkpoints complete --job ${jobId} ${id}`);
  return lines.join("\n");
}

function newest(files: CheckpointFile[]): CheckpointFile {
  return files.reduce((a, b) => (Date.parse(b.last_modified) > Date.parse(a.last_modified) ? b : a));
}

async function fetchShards(index: CheckpointFile): Promise<string[] | null> {
  if (index.size_bytes > 64 * 1024 * 1024) return null;
  try {
    const response = await fetch(index.url);
    if (!response.ok) return null;
    return shardsOfIndex(await response.json());
  } catch {
    return null;
  }
}
