import { metricDirection, type CheckpointState } from "./checkpoints.js";

/** A project's retention policy. A null rule keeps nothing by itself; a policy with no rule deletes nothing. */
export interface RetentionPolicy {
  /** Keep the newest N COMPLETE checkpoints of each job. */
  keepLast: number | null;
  /** Keep the best N checkpoints of each job by `metric` (from their trainer_state.json). */
  keepBest: number | null;
  metric: string | null;
  /** Direction of `metric`; null: lower is better for losses and errors, higher otherwise. */
  mode: "min" | "max" | null;
  /** Keep every checkpoint created less than this long ago. */
  maxAgeSeconds: number | null;
  /** Apply the policy on the server each time a checkpoint of the project completes. */
  auto: boolean;
}

export const EMPTY_POLICY: RetentionPolicy = { keepLast: null, keepBest: null, metric: null, mode: null, maxAgeSeconds: null, auto: false };

export interface RetentionCandidate {
  jobId: string;
  checkpointId: string;
  state: CheckpointState;
  createdAt: string;
  sizeBytes: number;
  fileCount: number;
  pinned: boolean;
  /** Names of aliases (project aliases and the derived `best`) pointing at it. */
  aliases: string[];
  metrics: Record<string, number>;
}

export type KeepReason = "pinned" | "aliased" | "writing" | "newest-complete" | "keep-last" | "keep-best" | "max-age" | "no-rule";

export interface RetentionPlan {
  delete: RetentionCandidate[];
  keep: { checkpoint: RetentionCandidate; reasons: KeepReason[] }[];
  bytesFreed: number;
}

function hasRule(policy: RetentionPolicy): boolean {
  return policy.keepLast !== null || (policy.keepBest !== null && policy.metric !== null) || policy.maxAgeSeconds !== null;
}

/**
 * What the policy deletes. `jobs` lists each job's checkpoints in listing order (oldest first).
 * Always kept, whatever the rules: pinned and aliased checkpoints, the newest COMPLETE one of
 * every job (a job is never left with nothing to resume from) and every WRITING one (files may
 * still be arriving). Anything else is deleted unless a rule keeps it.
 */
export function planRetention(policy: RetentionPolicy, jobs: RetentionCandidate[][], now: Date): RetentionPlan {
  const plan: RetentionPlan = { delete: [], keep: [], bytesFreed: 0 };
  const ruled = hasRule(policy);
  for (const checkpoints of jobs) {
    const complete = checkpoints.filter((c) => c.state === "COMPLETE");
    const newestComplete = complete.at(-1);
    const lastN = new Set(policy.keepLast === null ? [] : complete.slice(Math.max(0, complete.length - policy.keepLast)));
    const bestN = new Set<RetentionCandidate>();
    if (policy.keepBest !== null && policy.metric !== null) {
      const metric = policy.metric;
      const sign = (policy.mode ?? metricDirection(metric)) === "min" ? 1 : -1;
      const scored = checkpoints.filter((c) => c.state !== "WRITING" && typeof c.metrics[metric] === "number");
      scored.sort((a, b) => sign * (a.metrics[metric]! - b.metrics[metric]!));
      for (const c of scored.slice(0, policy.keepBest)) bestN.add(c);
    }
    for (const c of checkpoints) {
      const reasons: KeepReason[] = [];
      if (c.pinned) reasons.push("pinned");
      if (c.aliases.length > 0) reasons.push("aliased");
      if (c.state === "WRITING") reasons.push("writing");
      if (c === newestComplete) reasons.push("newest-complete");
      if (lastN.has(c)) reasons.push("keep-last");
      if (bestN.has(c)) reasons.push("keep-best");
      if (policy.maxAgeSeconds !== null && now.getTime() - Date.parse(c.createdAt) < policy.maxAgeSeconds * 1000) reasons.push("max-age");
      if (!ruled) reasons.push("no-rule");
      if (reasons.length > 0) plan.keep.push({ checkpoint: c, reasons });
      else {
        plan.delete.push(c);
        plan.bytesFreed += c.sizeBytes;
      }
    }
  }
  return plan;
}

/** "14d", "36h", "90m", "3600s" or plain seconds. */
export function parseDuration(text: string): number | null {
  const m = /^([0-9]{1,9})\s*(s|m|h|d|w)?$/i.exec(text.trim());
  if (!m) return null;
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[(m[2] ?? "s").toLowerCase() as "s"];
  return Number(m[1]) * unit;
}
