/**
 * The one rule for which checkpoint a file belongs to, shared by the server, the stores and the
 * SDK (so it imports nothing: the SDK may load it without pulling in anything of the server).
 *
 * A checkpoint is a top-level folder of a rank's files. Files at the root of a rank (a DeepSpeed
 * `latest`, a run's `config.yaml`) stay in `checkpoint_files` but belong to no checkpoint: Baseten
 * lists checkpoints as folders, and truss offers every listed checkpoint as deployable.
 */
export function checkpointIdOf(relativeName: string): string | null {
  const slash = relativeName.indexOf("/");
  return slash <= 0 ? null : relativeName.slice(0, slash);
}

/** The name inside its checkpoint folder ("checkpoint-5/a/b" -> "a/b"); null for root files. */
export function nameInCheckpoint(relativeName: string): string | null {
  const slash = relativeName.indexOf("/");
  return slash <= 0 ? null : relativeName.slice(slash + 1);
}
