import { ApiError } from "./errors.js";
import type { Caller, CkptService } from "./service.js";
import type { JobRecord, ProjectRecord } from "./types.js";

/** Baseten's LoadCheckpointConfig default. */
const DEFAULT_LOAD_CHECKPOINT_FOLDER = "/tmp/loaded_checkpoints";

/** A checkpoint to download before the training command starts, with its job found. */
export interface CheckpointToLoad {
  typ: "baseten_latest_checkpoint" | "baseten_named_checkpoint";
  trainingProjectId: string;
  trainingJobId: string;
  /** The named checkpoint; null for "the job's latest" (the download engine's rule picks it). */
  checkpointId: string | null;
}

export interface LoadCheckpointPlan {
  enabled: boolean;
  downloadFolder: string;
  checkpoints: CheckpointToLoad[];
}

/** The job cannot start: a referenced checkpoint, job or project does not exist, or the config is unusable. */
const cannotLoad = (message: string) => new ApiError(422, "CHECKPOINT_NOT_FOUND", message);
const invalidConfig = (message: string) => new ApiError(422, "INVALID_LOAD_CHECKPOINT_CONFIG", message);

/**
 * Resolves a job's `runtime.load_checkpoint_config` (Baseten's LoadCheckpointConfig, kept
 * verbatim from the job's creation) into the jobs and checkpoints to download.
 *
 * - `job_id` (with or without `project_name`): that job, which must be the caller's.
 * - `project_name` alone, or neither (then the job's own project): the most recent other job of
 *   that project that has the checkpoint (named), or any checkpoint (latest).
 */
export async function resolveLoadCheckpoints(service: CkptService, caller: Caller, projectId: string, jobId: string): Promise<LoadCheckpointPlan> {
  const { project, job } = await service.getJob(caller, projectId, jobId);
  const runtime = job.spec.runtime;
  const config = isObject(runtime) ? runtime.load_checkpoint_config : undefined;
  if (config === undefined || config === null) return { enabled: false, downloadFolder: DEFAULT_LOAD_CHECKPOINT_FOLDER, checkpoints: [] };
  if (!isObject(config)) throw invalidConfig("runtime.load_checkpoint_config must be an object");
  const enabled = config.enabled ?? false;
  if (typeof enabled !== "boolean") throw invalidConfig("runtime.load_checkpoint_config.enabled must be a boolean");
  const downloadFolder = config.download_folder ?? DEFAULT_LOAD_CHECKPOINT_FOLDER;
  if (typeof downloadFolder !== "string" || downloadFolder === "")
    throw invalidConfig("runtime.load_checkpoint_config.download_folder must be a non-empty string");
  if (!enabled) return { enabled: false, downloadFolder, checkpoints: [] };
  const entries = config.checkpoints ?? [];
  if (!Array.isArray(entries)) throw invalidConfig("runtime.load_checkpoint_config.checkpoints must be a list");

  const checkpoints: CheckpointToLoad[] = [];
  for (const [i, entry] of entries.entries()) {
    const where = `runtime.load_checkpoint_config.checkpoints[${i}]`;
    if (!isObject(entry)) throw invalidConfig(`${where} must be an object`);
    const typ = entry.typ ?? "baseten_latest_checkpoint";
    if (typ === "loops_checkpoint") throw invalidConfig(`${where}: loops_checkpoint is not supported by ckpt`);
    if (typ !== "baseten_latest_checkpoint" && typ !== "baseten_named_checkpoint") throw invalidConfig(`${where}.typ ${JSON.stringify(typ)} is unknown`);
    const projectName = optionalString(entry.project_name, `${where}.project_name`);
    const sourceJobId = optionalString(entry.job_id, `${where}.job_id`);
    const name = typ === "baseten_named_checkpoint" ? optionalString(entry.checkpoint_name, `${where}.checkpoint_name`) : null;
    if (typ === "baseten_named_checkpoint" && !name) throw invalidConfig(`${where}.checkpoint_name is required`);

    const sourceProject = projectName === null ? null : await projectByName(service, caller, projectName);
    let source: JobRecord;
    if (sourceJobId !== null) {
      source = await jobById(service, caller, sourceJobId, sourceProject);
      if (name !== null && !(await hasCheckpoint(service, caller, source, name)))
        throw cannotLoad(`checkpoint ${JSON.stringify(name)} does not exist in training job ${source.id}`);
      if (name === null && !(await hasCheckpoint(service, caller, source, null)))
        throw cannotLoad(`training job ${source.id} has no checkpoint to load`);
    } else {
      const inProject = sourceProject ?? project;
      const found = await newestJobWith(service, caller, inProject, job.id, name);
      if (!found)
        throw cannotLoad(
          name === null
            ? `no other job of training project ${JSON.stringify(inProject.name)} has a checkpoint to load`
            : `checkpoint ${JSON.stringify(name)} does not exist in any other job of training project ${JSON.stringify(inProject.name)}`,
        );
      source = found;
    }
    checkpoints.push({ typ, trainingProjectId: source.projectId, trainingJobId: source.id, checkpointId: name });
  }
  return { enabled: true, downloadFolder, checkpoints };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function optionalString(value: unknown, what: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string") throw invalidConfig(`${what} must be a string`);
  return value;
}

async function projectByName(service: CkptService, caller: Caller, name: string): Promise<ProjectRecord> {
  const found = (await service.listProjects(caller)).find(({ project }) => project.name === name);
  if (!found) throw cannotLoad(`training project ${JSON.stringify(name)} does not exist`);
  return found.project;
}

/** A job by id alone (ids are unique): looked for in the caller's projects, or in `project` only when one is named. */
async function jobById(service: CkptService, caller: Caller, jobId: string, project: ProjectRecord | null): Promise<JobRecord> {
  const projects = project ? [project] : (await service.listProjects(caller)).map((p) => p.project);
  for (const candidate of projects) {
    try {
      return (await service.getJob(caller, candidate.id, jobId)).job;
    } catch (err) {
      if (!(err instanceof ApiError) || err.statusCode !== 404) throw err;
    }
  }
  throw cannotLoad(`training job ${jobId} does not exist${project ? ` in training project ${JSON.stringify(project.name)}` : ""}`);
}

async function hasCheckpoint(service: CkptService, caller: Caller, job: JobRecord, name: string | null): Promise<boolean> {
  const { checkpoints } = await service.listCheckpoints(caller, job.projectId, job.id);
  return name === null ? checkpoints.length > 0 : checkpoints.some((c) => c.checkpointId === name);
}

async function newestJobWith(service: CkptService, caller: Caller, project: ProjectRecord, exceptJobId: string, name: string | null): Promise<JobRecord | null> {
  const { jobs } = await service.listJobs(caller, project.id);
  for (const job of jobs) {
    if (job.id === exceptJobId) continue;
    if (await hasCheckpoint(service, caller, job, name)) return job;
  }
  return null;
}
