import type { ListedCheckpoint } from "../domain/service.js";
import type { AliasHistoryEntry, AliasRecord, FileRecord, JobRecord, ProjectRecord } from "../domain/types.js";
import type { CheckpointFacts } from "../domain/inspection.js";
import type { RetentionCandidate, RetentionPolicy } from "../domain/retention.js";

/** The one place that turns domain records into API objects of Baseten's shapes. */

function presentProjectSummary(project: ProjectRecord) {
  return { id: project.id, name: project.name };
}

/**
 * Baseten reports the instance a job ran on. A self-hosted job has none of Baseten's instance
 * types, so this echoes what the job asked for in `compute` (GPU type and count, memory, CPU).
 */
function instanceTypeOf(spec: Record<string, unknown>) {
  const compute = (spec.compute ?? {}) as Record<string, unknown>;
  const accelerator = (compute.accelerator ?? {}) as Record<string, unknown>;
  const int = (v: unknown) => (typeof v === "number" && Number.isInteger(v) ? v : 0);
  const gpuType = typeof accelerator.accelerator === "string" ? accelerator.accelerator : null;
  const cpuMillis =
    typeof compute.cpu_count === "number" ? Math.round(compute.cpu_count * 1000) : int(compute.millicpu_limit);
  return {
    id: "self-hosted",
    name: gpuType ? `self-hosted ${int(accelerator.count) || 1}x${gpuType}` : "self-hosted",
    memory_limit_mib: typeof compute.memory === "string" ? parseMemoryMib(compute.memory) : 0,
    millicpu_limit: cpuMillis,
    gpu_count: gpuType ? int(accelerator.count) || 1 : 0,
    gpu_type: gpuType,
    gpu_memory_limit_mib: null,
  };
}

function parseMemoryMib(memory: string): number {
  const m = /^([0-9]+)\s*(Mi|Gi|Ti|M|G|T)?$/i.exec(memory.trim());
  if (!m) return 0;
  const n = Number(m[1]);
  const unit = (m[2] ?? "Mi").toLowerCase();
  return unit.startsWith("t") ? n * 1024 * 1024 : unit.startsWith("g") ? n * 1024 : n;
}

export function presentJob(job: JobRecord, project: ProjectRecord) {
  return {
    id: job.id,
    created_at: job.createdAt,
    current_status: job.status,
    error_message: job.errorMessage,
    instance_type: instanceTypeOf(job.spec),
    updated_at: job.updatedAt,
    training_project_id: project.id,
    training_project: presentProjectSummary(project),
    name: job.name,
    checkpoint_sync_status: job.checkpointSyncStatus,
    priority: job.priority,
    availability_model: job.spec.availability_model === "spot" ? ("spot" as const) : ("dedicated" as const),
    // Always an object: truss reads job["user"]["email"]-style (`.get("user", {}).get("email")`),
    // which fails on null; UserV1's email is nullable, so an unknown creator is {"email": null}.
    user: { email: job.createdByEmail },
  };
}

export function presentProject(project: ProjectRecord, latestJob: JobRecord | null) {
  return {
    id: project.id,
    name: project.name,
    created_at: project.createdAt,
    updated_at: project.updatedAt,
    team_name: null,
    latest_job: latestJob ? presentJob(latestJob, project) : null,
  };
}

export function presentCheckpointFile(file: FileRecord, url: string) {
  return {
    url,
    relative_file_name: file.relativeName,
    node_rank: file.nodeRank,
    size_bytes: file.sizeBytes,
    last_modified: file.lastModified,
  };
}

/** `facts`: what the checkpoint's files said when committed (base model, adapter config, parameters). */
export function presentCheckpoint(summary: ListedCheckpoint, job: JobRecord, facts?: CheckpointFacts) {
  const syncing = job.checkpointSyncStatus === "SYNCING";
  return {
    checkpoint_id: summary.checkpointId,
    created_at: summary.createdAt,
    checkpoint_type: summary.hasAdapterConfig || facts?.holdsLoraTensors ? "lora" : "full",
    base_model: facts?.baseModel ?? null,
    lora_adapter_config: facts?.loraAdapterConfig ?? null,
    size_bytes: summary.sizeBytes,
    sync_status: syncing ? "SYNCING" : "COMPLETED",
    training_job_id: job.id,
    parameter_count: facts?.parameterCount ?? null,
    state: summary.state,
    file_count: summary.fileCount,
    aliases: summary.aliases,
    pinned: summary.pinned,
    completed_at: summary.completedAt,
    completed_by: summary.completedBy,
  };
}

export function presentAlias(alias: AliasRecord) {
  return { name: alias.name, training_job_id: alias.jobId, checkpoint_id: alias.checkpointId, updated_at: alias.updatedAt };
}

export function presentAliasMove(entry: AliasHistoryEntry) {
  return { version: entry.version, training_job_id: entry.jobId, checkpoint_id: entry.checkpointId, changed_at: entry.changedAt };
}

export function presentPolicy(policy: RetentionPolicy) {
  return {
    keep_last: policy.keepLast,
    keep_best: policy.keepBest,
    metric: policy.metric,
    mode: policy.mode,
    max_age_seconds: policy.maxAgeSeconds,
    auto: policy.auto,
  };
}

export function presentRetentionEntry(c: RetentionCandidate) {
  return {
    training_job_id: c.jobId,
    checkpoint_id: c.checkpointId,
    state: c.state,
    size_bytes: c.sizeBytes,
    file_count: c.fileCount,
    created_at: c.createdAt,
  };
}
