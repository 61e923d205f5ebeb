import { checkpointIdOf, nameInCheckpoint } from "./checkpoint-id.js";

/**
 * Files by which a framework says "this checkpoint folder is finished", recognised by name alone,
 * directly inside the checkpoint folder: HF Trainer writes trainer_state.json last in
 * `checkpoint-N/`; PyTorch DCP writes `.metadata` after every `__R_S.distcp`; `.ckpt-complete`
 * and `COMPLETE` are for any other training code (an empty file is enough). Imports nothing of
 * the server: the SDK's sync engine uses the same list to upload markers last.
 */
export const COMPLETION_MARKERS: ReadonlySet<string> = new Set(["trainer_state.json", ".metadata", ".ckpt-complete", "COMPLETE"]);

/** A completion marker by name (see COMPLETION_MARKERS). */
export function isCompletionMarker(relativeName: string): boolean {
  const inside = nameInCheckpoint(relativeName);
  return inside !== null && COMPLETION_MARKERS.has(inside);
}

/**
 * A sharded safetensors index (`model.safetensors.index.json`, directly in the checkpoint
 * folder): the checkpoint is complete once every shard its weight_map names is present at the
 * size its own header declares.
 */
export function isSafetensorsIndex(relativeName: string): boolean {
  const inside = nameInCheckpoint(relativeName);
  return inside !== null && !inside.includes("/") && inside.endsWith(".safetensors.index.json");
}

/** DeepSpeed's `latest` at the root of a rank: its text is the tag (folder) of the checkpoint it finished. */
export function isDeepSpeedLatest(relativeName: string): boolean {
  return relativeName === "latest";
}

/** Files whose content decides completeness; anything a writer writes last. Uploaded last by `ckpt run`. */
export function isWrittenLast(relativeName: string): boolean {
  return isCompletionMarker(relativeName) || isSafetensorsIndex(relativeName) || isDeepSpeedLatest(relativeName);
}

export { checkpointIdOf };
