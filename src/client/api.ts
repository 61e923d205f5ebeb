import { CkptApiError, apiErrorFrom } from "./errors.js";
import { isApiFetch } from "./transfer/api-fetch.js";
import type {
  CheckpointAlias,
  CheckpointAliasMove,
  CheckpointFile,
  CheckpointFilesPage,
  RetentionEntry,
  RetentionPlan,
  RetentionPolicy,
  TrainingJob,
  TrainingJobCheckpoint,
  TrainingProject,
} from "./types.js";

export const BASETEN_API_URL = "https://api.baseten.co";

export interface ClientOptions {
  /** Server base URL, e.g. http://127.0.0.1:8787 or https://api.baseten.co. */
  apiUrl: string;
  /** API key, sent as `Authorization: Api-Key <key>`. */
  apiKey: string;
  /** fetch implementation; defaults to the global one. */
  fetch?: typeof fetch;
  /** Extra headers on every API request (not on presigned URLs). */
  headers?: Record<string, string>;
}

/**
 * A thin client for the training API. Works against ckpt and against Baseten's own API: it uses
 * only Baseten's routes and fields, except where a method says it is a ckpt extension.
 */
export class CkptClient {
  readonly apiUrl: string;
  /** @internal used by uploads, never printed. */
  readonly apiKey: string;
  readonly fetch: typeof fetch;
  /**
   * True when `fetch` is a plain transport (the global fetch, or apiFetch's): then file bodies
   * go over the transfer layer (node:http). False for a fetch the caller supplied to see or shape
   * every request: then those go through it too.
   */
  readonly plainTransport: boolean;
  private readonly extraHeaders: Record<string, string>;

  constructor(options: ClientOptions) {
    this.apiUrl = options.apiUrl.replace(/\/+$/, "");
    this.apiKey = options.apiKey;
    this.fetch = options.fetch ?? globalThis.fetch;
    this.plainTransport = options.fetch === undefined || isApiFetch(options.fetch);
    this.extraHeaders = options.headers ?? {};
  }

  /** The same client (URL, key, headers) sending its API requests through another `fetch`. */
  withFetch(fetchImpl: typeof fetch): CkptClient {
    return new CkptClient({ apiUrl: this.apiUrl, apiKey: this.apiKey, fetch: fetchImpl, headers: this.extraHeaders });
  }

  /** Sends one API request and parses the JSON answer; failures become CkptApiError. */
  async request<T>(method: string, path: string, init: { body?: unknown; query?: Record<string, string | number>; signal?: AbortSignal } = {}): Promise<T> {
    const url = new URL(this.apiUrl + path);
    for (const [k, v] of Object.entries(init.query ?? {})) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { authorization: `Api-Key ${this.apiKey}`, accept: "application/json", ...this.extraHeaders };
    if (init.body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetch(url, {
        method,
        headers,
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
        signal: init.signal,
      });
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      throw new CkptApiError(0, `${method} ${path}: ${(err as Error).message}${causeOf(err)}`);
    }
    if (!response.ok) throw await apiErrorFrom(response, `${method} ${path}`);
    return (await response.json()) as T;
  }

  async listProjects(signal?: AbortSignal): Promise<TrainingProject[]> {
    const body = await this.request<{ training_projects: TrainingProject[] }>("GET", "/v1/training_projects", { signal });
    return body.training_projects;
  }

  async getProject(projectId: string): Promise<TrainingProject> {
    const body = await this.request<{ training_project: TrainingProject }>("GET", `/v1/training_projects/${enc(projectId)}`);
    return body.training_project;
  }

  /** Creates the project, or returns the existing one of that name. */
  async upsertProject(name: string): Promise<TrainingProject> {
    const body = await this.request<{ training_project: TrainingProject }>("POST", "/v1/training_projects", {
      body: { training_project: { name } },
    });
    return body.training_project;
  }

  /** A project given by id or by name (ids are tried first). */
  async resolveProject(nameOrId: string): Promise<TrainingProject> {
    const projects = await this.listProjects();
    const byId = projects.find((p) => p.id === nameOrId);
    if (byId) return byId;
    const byName = projects.filter((p) => p.name === nameOrId);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1) throw new CkptApiError(400, `project name '${nameOrId}' is ambiguous: use its id`);
    throw new CkptApiError(404, `no training project with id or name '${nameOrId}'`);
  }

  async listJobs(projectId: string): Promise<TrainingJob[]> {
    const body = await this.request<{ training_jobs: TrainingJob[] }>("GET", `/v1/training_projects/${enc(projectId)}/jobs`);
    return body.training_jobs;
  }

  async getJob(projectId: string, jobId: string): Promise<TrainingJob> {
    const body = await this.request<{ training_job: TrainingJob }>("GET", `/v1/training_projects/${enc(projectId)}/jobs/${enc(jobId)}`);
    return body.training_job;
  }

  /** The project's newest job (by created_at), or a 404 CkptApiError when it has none. */
  async latestJob(projectId: string): Promise<TrainingJob> {
    const jobs = await this.listJobs(projectId);
    const newest = [...jobs].sort((a, b) => b.created_at.localeCompare(a.created_at))[0];
    if (!newest) throw new CkptApiError(404, `training project ${projectId} has no jobs`);
    return newest;
  }

  async createJob(projectId: string, trainingJob: Record<string, unknown> = {}): Promise<TrainingJob> {
    const body = await this.request<{ training_job: TrainingJob }>("POST", `/v1/training_projects/${enc(projectId)}/jobs`, {
      body: { training_job: trainingJob },
    });
    return body.training_job;
  }

  /** ckpt extension: the training side reports status and sync progress. */
  async updateJob(
    projectId: string,
    jobId: string,
    change: { current_status?: string; error_message?: string | null; checkpoint_sync_status?: "SYNCING" | "COMPLETED" | null; priority?: number },
  ): Promise<TrainingJob> {
    const body = await this.request<{ training_job: TrainingJob }>("PATCH", `/v1/training_projects/${enc(projectId)}/jobs/${enc(jobId)}`, {
      body: change,
    });
    return body.training_job;
  }

  async stopJob(projectId: string, jobId: string): Promise<TrainingJob> {
    const body = await this.request<{ training_job: TrainingJob }>("POST", `/v1/training_projects/${enc(projectId)}/jobs/${enc(jobId)}/stop`, { body: {} });
    return body.training_job;
  }

  async listCheckpoints(projectId: string, jobId: string): Promise<TrainingJobCheckpoint[]> {
    const body = await this.request<{ checkpoints: TrainingJobCheckpoint[] }>(
      "GET",
      `/v1/training_projects/${enc(projectId)}/jobs/${enc(jobId)}/checkpoints`,
    );
    return body.checkpoints;
  }

  // --- ckpt extensions: completeness, pins, aliases, retention ---------------------------------

  private checkpointPath(projectId: string, jobId: string, checkpointId: string): string {
    return `/v1/training_projects/${enc(projectId)}/jobs/${enc(jobId)}/checkpoints/${enc(checkpointId)}`;
  }

  /** ckpt extension: marks a checkpoint COMPLETE (for training code with no marker ckpt recognises). */
  async completeCheckpoint(projectId: string, jobId: string, checkpointId: string): Promise<TrainingJobCheckpoint> {
    return (await this.request<{ checkpoint: TrainingJobCheckpoint }>("POST", `${this.checkpointPath(projectId, jobId, checkpointId)}/complete`, { body: {} })).checkpoint;
  }

  /** ckpt extension: pinned checkpoints are never deleted by retention. */
  async pinCheckpoint(projectId: string, jobId: string, checkpointId: string): Promise<TrainingJobCheckpoint> {
    return (await this.request<{ checkpoint: TrainingJobCheckpoint }>("PUT", `${this.checkpointPath(projectId, jobId, checkpointId)}/pin`)).checkpoint;
  }

  async unpinCheckpoint(projectId: string, jobId: string, checkpointId: string): Promise<TrainingJobCheckpoint> {
    return (await this.request<{ checkpoint: TrainingJobCheckpoint }>("DELETE", `${this.checkpointPath(projectId, jobId, checkpointId)}/pin`)).checkpoint;
  }

  /** ckpt extension: the project's aliases. */
  async listAliases(projectId: string): Promise<CheckpointAlias[]> {
    return (await this.request<{ aliases: CheckpointAlias[] }>("GET", `/v1/training_projects/${enc(projectId)}/aliases`)).aliases;
  }

  async setAlias(projectId: string, name: string, target: { training_job_id: string; checkpoint_id: string }): Promise<CheckpointAlias> {
    return (await this.request<{ alias: CheckpointAlias }>("PUT", `/v1/training_projects/${enc(projectId)}/aliases/${enc(name)}`, { body: target })).alias;
  }

  async removeAlias(projectId: string, name: string): Promise<void> {
    await this.request("DELETE", `/v1/training_projects/${enc(projectId)}/aliases/${enc(name)}`);
  }

  async aliasHistory(projectId: string, name: string): Promise<CheckpointAliasMove[]> {
    return (await this.request<{ history: CheckpointAliasMove[] }>("GET", `/v1/training_projects/${enc(projectId)}/aliases/${enc(name)}/history`)).history;
  }

  /** ckpt extension: the project's retention policy. */
  async getRetentionPolicy(projectId: string): Promise<RetentionPolicy> {
    return (await this.request<{ policy: RetentionPolicy }>("GET", `/v1/training_projects/${enc(projectId)}/retention`)).policy;
  }

  async putRetentionPolicy(projectId: string, policy: Partial<RetentionPolicy>): Promise<RetentionPolicy> {
    return (await this.request<{ policy: RetentionPolicy }>("PUT", `/v1/training_projects/${enc(projectId)}/retention`, { body: policy })).policy;
  }

  async planRetention(projectId: string): Promise<RetentionPlan> {
    return this.request<RetentionPlan>("GET", `/v1/training_projects/${enc(projectId)}/retention/plan`);
  }

  /** Deletes what the policy deletes now; with `checkpoints` (a reviewed plan), only those of them. */
  async applyRetention(
    projectId: string,
    checkpoints?: { training_job_id: string; checkpoint_id: string }[],
  ): Promise<{ deleted: RetentionEntry[]; bytes_freed: number }> {
    return this.request("POST", `/v1/training_projects/${enc(projectId)}/retention/apply`, { body: checkpoints ? { checkpoints } : {} });
  }

  /** One page of the checkpoint_files endpoint, exactly as the server sent it. */
  async getCheckpointFilesPage(
    projectId: string,
    jobId: string,
    pageToken: number,
    pageSize: number,
    signal?: AbortSignal,
  ): Promise<CheckpointFilesPage> {
    return this.request<CheckpointFilesPage>("GET", `/v1/training_projects/${enc(projectId)}/jobs/${enc(jobId)}/checkpoint_files`, {
      query: { page_size: pageSize, page_token: pageToken },
      signal,
    });
  }

  /**
   * Every checkpoint file of a job, following next_page_token. Stops on a null/absent token or
   * an empty page (so a server that keeps returning a token with no files cannot loop us).
   */
  async *listCheckpointFiles(args: { projectId: string; jobId: string; pageSize?: number; signal?: AbortSignal }): AsyncGenerator<CheckpointFile> {
    let token: number | null | undefined = 0;
    while (token !== null && token !== undefined) {
      const page: CheckpointFilesPage = await this.getCheckpointFilesPage(args.projectId, args.jobId, token, args.pageSize ?? 1000, args.signal);
      for (const file of page.presigned_urls) yield file;
      if (page.presigned_urls.length === 0) return;
      token = page.next_page_token;
    }
  }
}

const enc = encodeURIComponent;

function causeOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause ? ` (${cause.code ?? cause.message ?? "network error"})` : "";
}
