import type { JobStatus } from "./types.js";

/**
 * Checkpoint states and their rules: no HTTP, no SQL. The stores call `stateAfterCommit` inside
 * the transaction that commits a file, so the rule has one home and every backend applies it.
 */
export const CHECKPOINT_STATES = ["WRITING", "COMPLETE", "INCOMPLETE"] as const;
export type CheckpointState = (typeof CHECKPOINT_STATES)[number];

/** Why a checkpoint became COMPLETE (kept with it, shown by `ckpt checkpoints -o json`). */
export type CompletionReason = "marker" | "safetensors-index" | "deepspeed-latest" | "explicit" | "job-completed";

export interface StateChange {
  state: CheckpointState;
  /** Set when the change makes it COMPLETE. */
  completedBy: CompletionReason | null;
}

/**
 * The state after a file of the checkpoint is committed; null when it does not change.
 *
 * - A completion marker (by name) makes it COMPLETE, whatever it was: frameworks write it last.
 * - A replacement that changes an existing file's bytes sends a COMPLETE checkpoint back to
 *   WRITING until a marker is written again: the writer is rewriting the checkpoint, and a
 *   download now could mix old and new files. Re-sending identical bytes (same size and SHA-256)
 *   changes nothing.
 * - A new file arriving in a COMPLETE checkpoint leaves it COMPLETE: uploads of one checkpoint run
 *   in parallel, so a file written before the marker may land after it (`ckpt run` uploads
 *   markers last to keep that window shut).
 */
export function stateAfterCommit(change: {
  current: CheckpointState;
  isMarker: boolean;
  replacedWithDifferentBytes: boolean;
}): StateChange | null {
  if (change.isMarker) return change.current === "COMPLETE" ? null : { state: "COMPLETE", completedBy: "marker" };
  if (change.replacedWithDifferentBytes && change.current === "COMPLETE") return { state: "WRITING", completedBy: null };
  return null;
}

/** What a job ending does to its checkpoints still WRITING: COMPLETED completes them, FAILED or STOPPED leaves them INCOMPLETE. */
export function stateWhenJobEnds(status: JobStatus): StateChange | null {
  if (status === "TRAINING_JOB_COMPLETED") return { state: "COMPLETE", completedBy: "job-completed" };
  if (status === "TRAINING_JOB_FAILED" || status === "TRAINING_JOB_STOPPED") return { state: "INCOMPLETE", completedBy: null };
  return null;
}

/** What HF Trainer's trainer_state.json says, reduced to what aliases and retention use. */
export interface TrainerStateSummary {
  globalStep: number | null;
  /** The folder name of `best_model_checkpoint` ("/out/checkpoint-500" -> "checkpoint-500"). */
  bestCheckpoint: string | null;
  bestMetric: number | null;
  /** For each numeric key of log_history, its latest value (eval_loss, loss, eval_accuracy...). */
  metrics: Record<string, number>;
}

export function summarizeTrainerState(json: unknown): TrainerStateSummary | null {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return null;
  const state = json as Record<string, unknown>;
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const best = typeof state.best_model_checkpoint === "string" ? state.best_model_checkpoint.replace(/[\\/]+$/, "") : "";
  const metrics: Record<string, number> = {};
  if (Array.isArray(state.log_history))
    for (const entry of state.log_history)
      if (entry && typeof entry === "object")
        for (const [key, value] of Object.entries(entry as Record<string, unknown>))
          if (num(value) !== null && key !== "step" && key !== "epoch" && Object.keys(metrics).length < 256) metrics[key] = value as number;
  return {
    globalStep: num(state.global_step),
    bestCheckpoint: best ? best.slice(Math.max(best.lastIndexOf("/"), best.lastIndexOf("\\")) + 1) || null : null,
    bestMetric: num(state.best_metric),
    metrics,
  };
}

/** Lower is better for losses and error rates, higher for everything else (accuracy, f1, bleu...). */
export function metricDirection(metric: string): "min" | "max" {
  return /loss|perplexity|ppl|error|wer|cer|mse|mae|rmse/i.test(metric) ? "min" : "max";
}

/** Shard names (relative to the index's folder) of a safetensors index; null when it is not one. */
export function shardsOfIndex(json: unknown): string[] | null {
  if (typeof json !== "object" || json === null) return null;
  const map = (json as { weight_map?: unknown }).weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) return null;
  const shards = new Set<string>();
  for (const value of Object.values(map)) if (typeof value === "string" && value !== "") shards.add(value);
  return [...shards];
}

/**
 * The size a safetensors file must have, from its first bytes: 8 bytes of little-endian header
 * length, the JSON header, then the tensor data up to the largest data_offsets end. Null when the
 * bytes are not a safetensors header (or not all of it is in `head`).
 */
export function safetensorsDeclaredSize(head: Buffer): number | null {
  if (head.length < 8) return null;
  const headerLength = Number(head.readBigUInt64LE(0));
  if (!Number.isSafeInteger(headerLength) || head.length < 8 + headerLength) return null;
  let header: unknown;
  try {
    header = JSON.parse(head.subarray(8, 8 + headerLength).toString("utf8"));
  } catch {
    return null;
  }
  if (typeof header !== "object" || header === null) return null;
  let end = 0;
  for (const [name, tensor] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") continue;
    const offsets = (tensor as { data_offsets?: unknown })?.data_offsets;
    if (!Array.isArray(offsets) || typeof offsets[1] !== "number") return null;
    end = Math.max(end, offsets[1]);
  }
  return 8 + headerLength + end;
}
