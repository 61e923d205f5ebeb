import type { Readable } from "node:stream";
import { AUDIT_ACTIONS, recordAudit, type AuditActor, type AuditRecord } from "./audit.js";
import { checkReadiness, type Readiness } from "./readiness.js";
import { ApiError, badRequest, conflict, notFound, unauthorized } from "./errors.js";
import { newId } from "./ids.js";
import { keyFromAuthorization, parseKey, secretMatches } from "./keys.js";
import {
  assertRelativeName,
  blobKeyOf,
  blobKeyOfFile,
  checkpointVersionsPrefix,
  jobBlobPrefix,
  parseAnyBlobKey,
  versionedBlobKey,
} from "./names.js";
import { isSha256Hex } from "./digests.js";
import { collectGarbage, type GcReport } from "./gc.js";
import { checkpointIdOf, nameInCheckpoint } from "./checkpoint-id.js";
import { isDeepSpeedLatest, isSafetensorsIndex } from "./checkpoint-markers.js";
import { safetensorsDeclaredSize, shardsOfIndex, stateWhenJobEnds, summarizeTrainerState } from "./checkpoints.js";
import { EMPTY_POLICY, planRetention, type RetentionCandidate, type RetentionPlan, type RetentionPolicy } from "./retention.js";
import {
  JOB_SEARCH_ORDER_FIELDS,
  JOB_STATUSES,
  TERMINAL_STATUSES,
  type AuditEntry,
  type AliasHistoryEntry,
  type AliasRecord,
  type CheckpointSummary,
  type JobSearch,
  type FileRecord,
  type JobRecord,
  type JobStatus,
  type ProjectRecord,
  type SyncStatus,
  type UploadRecord,
} from "./types.js";
import type { MetadataStore } from "../stores/metadata/store.js";
import { PrefixCollector, extractorFor, readFactsFrom, storeFacts, type StoredFacts } from "./file-facts.js";
import { LISTING_FACT_FORMATS, checkpointFactsOf, pageCheckpointTensors, type CheckpointFacts, type CheckpointTensorsPage } from "./inspection.js";
import type { BlobStore, DirectUploadPlan, UploadedPartRef } from "../stores/blobs/store.js";
import { translateBlobErrors } from "./blob-errors.js";

/** Direct-upload URLs live a day at most: long enough for a slow link, short enough to sweep. */
const MAX_UPLOAD_TTL_SECONDS = 24 * 3600;
/** Largest JSON a completion check reads (a long run's trainer_state.json is a few MiB). */
const MAX_MARKER_JSON_BYTES = 64 * 1024 * 1024;
/** Largest safetensors header read to learn a shard's declared size (the format caps it at 100 MB). */
const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;
/** The derived per-job alias: never set by hand. */
const BEST_ALIAS = "best";
const ALIAS_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A checkpoint as listed: its summary plus the aliases (project ones and `best`) naming it. */
export interface ListedCheckpoint extends CheckpointSummary {
  aliases: string[];
}

/** Five TiB, S3's largest object. */
export const MAX_FILE_BYTES = 5 * 1024 ** 4;

export interface ServiceLimits {
  /** Largest page the listing returns; larger requests are clamped to it. */
  maxPageSize: number;
  /** Lifetime of presigned download URLs, in seconds. */
  urlTtlSeconds: number;
  /** New files beyond this count are refused with a 409 (replacements are always allowed). */
  maxFilesPerJob: number;
  /** Training-log lines kept per job (see domain/logs.ts); its default when absent. */
  maxLogLinesPerJob?: number;
}

export interface Caller {
  orgId: string;
  keyId: string;
  /** The key's owner email, recorded on the jobs it creates; absent for admin commands. */
  email?: string | null;
}

/** POST /v1/training_jobs/search as it arrives (Baseten's SearchTrainingJobsRequestV1), unchecked values. */
export interface JobSearchRequest {
  projectId?: string | null;
  jobId?: string | null;
  statuses?: string[] | null;
  orderBy?: { field: string; order: string }[];
}

/**
 * A search answers at most this many jobs (Baseten's request has no paging). truss reads the
 * first job of a search, or the few active ones, so the cap costs it nothing and keeps an
 * unfiltered search over a large organisation an index range of bounded size.
 */
export const MAX_SEARCH_RESULTS = 1000;

export interface PresignedFile {
  file: FileRecord;
  url: string;
}

export interface FilePage {
  files: PresignedFile[];
  nextPageToken: number | null;
  totalCount: number;
}

export interface ServiceCapabilities {
  /** Direct-upload parts are PUT to this API server (the embedded store), not to the object store. */
  partsViaApiServer: boolean;
}

/**
 * The domain: what ckpt does, with no HTTP and no SQL. Routes call it with a Caller; it
 * enforces tenancy (by passing the caller's organisation into every store lookup), validates
 * names, and keeps the invariant that a file is listed only once its bytes are durable.
 */
export class CkptService {
  constructor(
    readonly metadata: MetadataStore,
    readonly blobs: BlobStore,
    readonly limits: ServiceLimits,
  ) {}

  /** Finishes what a crash interrupted: partial uploads and half-done deletes. */
  /**
   * What a starting server runs (every temporary file is a dead upload then), and `ckpt admin
   * gc`, which may run beside live servers and so passes `temporaryMinAgeMs`.
   */
  async recover(options: { temporaryMinAgeMs?: number } = {}): Promise<{ incompleteUploadsRemoved: number; deletesFinished: number }> {
    const incompleteUploadsRemoved = (await this.blobs.sweepIncomplete({ minAgeMs: options.temporaryMinAgeMs })) + (await this.expireUploads());
    const pending = await this.metadata.jobsPendingPurge();
    for (const { projectId, jobId } of pending) await this.purgeJob(projectId, jobId);
    await this.metadata.purgeDeletedProjects();
    const checkpointDeletes = await this.metadata.checkpointDeletesPending();
    for (const deletion of checkpointDeletes) await this.finishCheckpointDelete(deletion);
    return { incompleteUploadsRemoved, deletesFinished: pending.length + checkpointDeletes.length };
  }

  /**
   * `ckpt admin gc`: recover(), then every blob no file row references (and no upload is
   * writing) that is older than `minAgeMs` is an orphan, removed unless `dryRun` (see gc.ts).
   */
  async collectGarbage(options: { dryRun: boolean; minAgeMs: number }): Promise<GcReport> {
    return collectGarbage({ metadata: this.metadata, blobs: this.blobs, recover: (o) => this.recover(o) }, options);
  }

  // --- Operations: audit log and readiness ---------------------------------------------------

  /**
   * Records a state-changing action in the audit log (who, when, what; never a secret). Every
   * feature that changes or removes something calls this once the change has taken effect.
   */
  async audit(actor: AuditActor, record: AuditRecord): Promise<AuditEntry> {
    return recordAudit(this.metadata, actor, record);
  }

  /** A query on each store, each bounded by `timeoutMs` (the /readyz probe). */
  async readiness(timeoutMs: number): Promise<Readiness> {
    return checkReadiness(this.metadata, this.blobs, timeoutMs);
  }

  // --- Auth -----------------------------------------------------------------------------------

  /** Looks the key up on every request (no cache), so a revocation takes effect at once. */
  async authenticate(authorization: string | undefined): Promise<Caller> {
    const plaintext = keyFromAuthorization(authorization);
    if (!plaintext) throw unauthorized("missing API key: send 'Authorization: Api-Key <key>'");
    const parsed = parseKey(plaintext);
    if (!parsed) {
      secretMatches("x", null); // same work as a real comparison
      throw unauthorized("invalid API key");
    }
    const record = await this.metadata.findApiKey(parsed.keyId);
    const ok = secretMatches(parsed.secret, record?.secretHash ?? null);
    if (!ok || !record || record.revokedAt) throw unauthorized("invalid API key");
    return { orgId: record.orgId, keyId: record.keyId, email: record.ownerEmail };
  }

  // --- Projects -------------------------------------------------------------------------------

  async upsertProject(caller: Caller, name: string): Promise<{ project: ProjectRecord; latestJob: JobRecord | null }> {
    if (name.trim() === "") throw badRequest("training_project.name must not be empty");
    const project = await this.metadata.upsertProject(caller.orgId, name);
    return { project, latestJob: await this.metadata.latestJob(caller.orgId, project.id) };
  }

  async listProjects(caller: Caller): Promise<{ project: ProjectRecord; latestJob: JobRecord | null }[]> {
    const projects = await this.metadata.listProjects(caller.orgId);
    const latest = await this.metadata.latestJobs(caller.orgId, projects.map((p) => p.id));
    return projects.map((project) => ({ project, latestJob: latest.get(project.id) ?? null }));
  }

  async getProject(caller: Caller, projectId: string): Promise<{ project: ProjectRecord; latestJob: JobRecord | null }> {
    const project = await this.requireProject(caller, projectId);
    return { project, latestJob: await this.metadata.latestJob(caller.orgId, project.id) };
  }

  async deleteProject(caller: Caller, projectId: string): Promise<void> {
    const marked = await this.metadata.markProjectDeleted(caller.orgId, projectId);
    if (!marked) throw notFound("training project");
    await this.audit(caller, { action: "project.deleted", subject: projectId, details: { jobs: marked.jobIds.length } });
    for (const jobId of marked.jobIds) await this.purgeJob(projectId, jobId);
    await this.metadata.purgeDeletedProjects();
  }

  private async requireProject(caller: Caller, projectId: string): Promise<ProjectRecord> {
    const project = await this.metadata.getProject(caller.orgId, projectId);
    if (!project) throw notFound("training project");
    return project;
  }

  // --- Jobs -----------------------------------------------------------------------------------

  async createJob(
    caller: Caller,
    projectId: string,
    spec: Record<string, unknown>,
  ): Promise<{ project: ProjectRecord; job: JobRecord }> {
    const project = await this.requireProject(caller, projectId);
    const name = typeof spec.name === "string" ? spec.name : null;
    const priority = typeof spec.priority === "number" ? spec.priority : 0;
    const job = await this.metadata.createJob({
      id: newId(),
      orgId: caller.orgId,
      projectId,
      name,
      spec,
      priority,
      createdByEmail: caller.email ?? null,
    });
    return { project, job };
  }

  /**
   * The caller's organisation's jobs, filtered as Baseten's search filters them. An unknown
   * status, order field or direction is a 400 naming the allowed values (a typo must not turn
   * into "no jobs"). An empty `statuses` list filters nothing, like an absent one.
   */
  async searchJobs(caller: Caller, request: JobSearchRequest): Promise<{ project: ProjectRecord; job: JobRecord }[]> {
    return this.metadata.searchJobs(caller.orgId, parseJobSearch(request));
  }

  async listJobs(caller: Caller, projectId: string): Promise<{ project: ProjectRecord; jobs: JobRecord[] }> {
    const project = await this.requireProject(caller, projectId);
    return { project, jobs: await this.metadata.listJobs(caller.orgId, projectId) };
  }

  async getJob(caller: Caller, projectId: string, jobId: string): Promise<{ project: ProjectRecord; job: JobRecord }> {
    const project = await this.requireProject(caller, projectId);
    const job = await this.metadata.getJob(caller.orgId, projectId, jobId);
    if (!job) throw notFound("training job");
    return { project, job };
  }

  /** Stopping a finished job is a no-op that answers the job as it is (Baseten does the same). */
  async stopJob(caller: Caller, projectId: string, jobId: string): Promise<JobRecord> {
    const { job } = await this.getJob(caller, projectId, jobId);
    if (TERMINAL_STATUSES.has(job.status)) return job;
    const stopped = (await this.metadata.updateJob(caller.orgId, projectId, jobId, { status: "TRAINING_JOB_STOPPED" }))!;
    await this.settleCheckpoints(stopped);
    return stopped;
  }

  async updateJob(
    caller: Caller,
    projectId: string,
    jobId: string,
    change: { status?: JobStatus; errorMessage?: string | null; syncStatus?: SyncStatus | null; priority?: number },
  ): Promise<JobRecord> {
    await this.getJob(caller, projectId, jobId);
    const updated = await this.metadata.updateJob(caller.orgId, projectId, jobId, change);
    if (!updated) throw notFound("training job");
    if (change.status !== undefined) await this.settleCheckpoints(updated);
    return updated;
  }

  /**
   * The job disappears at once (marked deleted in one transaction); its blobs and rows are then
   * removed. A crash in between leaves it marked, and recover() finishes the job on start-up.
   */
  async deleteJob(caller: Caller, projectId: string, jobId: string): Promise<void> {
    await this.requireProject(caller, projectId);
    if (!(await this.metadata.markJobDeleted(caller.orgId, projectId, jobId))) throw notFound("training job");
    await this.audit(caller, { action: "job.deleted", subject: jobId, details: { project_id: projectId } });
    await this.purgeJob(projectId, jobId);
  }

  private async purgeJob(projectId: string, jobId: string): Promise<void> {
    await this.blobs.deletePrefix(jobBlobPrefix(projectId, jobId));
    await this.metadata.purgeJob(jobId);
  }

  // --- Files ----------------------------------------------------------------------------------

  async putFile(
    caller: Caller,
    target: { projectId: string; jobId: string; nodeRank: number; relativeName: string },
    body: Readable,
    integrity: { contentLength?: number; sha256?: string },
  ): Promise<FileRecord> {
    assertRelativeName(target.relativeName);
    if (integrity.sha256 !== undefined && !isSha256Hex(integrity.sha256)) throw badRequest("x-ckpt-sha256 must be 64 lowercase hex characters");
    await this.getJob(caller, target.projectId, target.jobId);
    // Refused before any byte moves; commitFile decides it again, atomically.
    await this.refuseConflicts(target);
    return this.storeVersion(target, async (key) => {
      // Facts come from the bytes on their way to the store: no second read of the file.
      const extractor = extractorFor(target.relativeName);
      const collector = extractor ? new PrefixCollector(extractor, integrity.contentLength) : null;
      const put = await translateBlobErrors(() =>
        this.blobs.put(key, body, {
          expectedSize: integrity.contentLength,
          expectedSha256: integrity.sha256,
          ...(collector ? { observe: (chunk: Buffer) => collector.offer(chunk) } : {}),
        }),
      );
      return { stored: put, facts: collector && storeFacts(collector.facts(put.sizeBytes)) };
    });
  }

  /**
   * Writes a new version of a file at its own key and commits it. No lock: two servers replacing
   * one name at once each write their own key, and the row switch in the metadata store (one
   * transaction, serialised per job) decides which is listed. Whoever's switch unreferenced a
   * version deletes it; a crash in between leaves an orphan that gc removes. The key is announced
   * to gc (a blob write) before the first byte, so gc never takes an upload in flight for garbage.
   */
  private async storeVersion(
    target: { projectId: string; jobId: string; nodeRank: number; relativeName: string },
    write: (key: string) => Promise<{ stored: { sizeBytes: number; sha256: string | null }; facts: StoredFacts | null }>,
  ): Promise<FileRecord> {
    const key = versionedBlobKey(target.projectId, target.jobId, target.nodeRank, target.relativeName, newId(20));
    await this.metadata.beginBlobWrite(key, target.jobId);
    let written: Awaited<ReturnType<typeof write>>;
    try {
      written = await write(key);
    } catch (err) {
      await this.discardVersion(key);
      throw err;
    }
    return this.commit(target, key, written.stored, written.facts);
  }

  /** Removes a version no row references (an upload that failed or was refused at commit). */
  private async discardVersion(key: string): Promise<void> {
    await this.blobs.delete(key).catch(() => {});
    await this.metadata.endBlobWrite(key).catch(() => {});
  }

  /** Makes stored bytes visible as a file (the row switch), then deletes the version it replaced. */
  private async commit(
    target: { projectId: string; jobId: string; nodeRank: number; relativeName: string },
    key: string,
    stored: { sizeBytes: number; sha256: string | null },
    facts: StoredFacts | null,
  ): Promise<FileRecord> {
    const checkpointId = checkpointIdOf(target.relativeName);
    let committed: Awaited<ReturnType<MetadataStore["commitFile"]>>;
    try {
      const before = checkpointId === null ? null : await this.metadata.getCheckpoint(target.jobId, checkpointId);
      committed = await this.metadata.commitFile({
        jobId: target.jobId,
        nodeRank: target.nodeRank,
        relativeName: target.relativeName,
        sizeBytes: stored.sizeBytes,
        sha256: stored.sha256,
        blobKey: key,
        maxFilesPerJob: this.limits.maxFilesPerJob,
        facts,
      });
      if (typeof committed !== "string") {
        const { file, replaced } = committed;
        // This switch unreferenced that version, so its bytes are ours to delete (if this fails, gc's).
        if (replaced) await this.blobs.delete(blobKeyOfFile(target.projectId, replaced)).catch(() => {});
        await this.afterCommit(target.jobId, file, before);
        return file;
      }
    } catch (err) {
      // The database refused (full, unreachable) or the answer was lost: the version stays only if listed.
      const listed = await this.metadata.getFile(target.jobId, target.nodeRank, target.relativeName).catch(() => "unknown" as const);
      if (listed !== "unknown" && listed?.blobKey !== key) await this.discardVersion(key);
      throw err;
    }
    await this.discardVersion(key);
    if (committed === "job-gone") throw notFound("training job"); // deleted while the bytes were in flight
    if (committed === "too-many-files") throw new ApiError(409, "TOO_MANY_FILES", `a job holds at most ${this.limits.maxFilesPerJob} files`);
    if (committed === "path-conflict") {
      await this.refuseConflicts(target);
      throw conflict(`'${target.relativeName}' cannot be a file and a folder at once in rank ${target.nodeRank}`);
    }
    throw conflict(`checkpoint '${checkpointId}' is being deleted; upload it again once the delete has finished`);
  }

  /** Facts of bytes already at their key (direct uploads, imports): one ranged read of the file's start. */
  private async factsOfStored(key: string, relativeName: string, sizeBytes: number): Promise<StoredFacts | null> {
    const extractor = extractorFor(relativeName);
    if (!extractor) return null;
    return storeFacts(await readFactsFrom((range) => this.blobs.read(key, range), extractor, sizeBytes));
  }

  private async refuseConflicts(target: { jobId: string; nodeRank: number; relativeName: string }): Promise<void> {
    const clash = await this.metadata.findPathConflict(target.jobId, target.nodeRank, target.relativeName);
    if (clash !== null)
      throw conflict(`'${target.relativeName}' and the existing '${clash}' cannot both exist in rank ${target.nodeRank}: one would be a file and a folder at once`);
  }

  /**
   * Registers bytes that already exist elsewhere (e.g. objects adopted by `ckpt admin import`):
   * same name rules, tenancy and conflict checks as an upload; `bringIn` puts them at the key.
   */
  async importFile(
    caller: Caller,
    target: { projectId: string; jobId: string; nodeRank: number; relativeName: string },
    bringIn: (key: string) => Promise<{ sizeBytes: number; sha256: string | null }>,
  ): Promise<FileRecord> {
    assertRelativeName(target.relativeName);
    await this.getJob(caller, target.projectId, target.jobId);
    await this.refuseConflicts(target);
    return this.storeVersion(target, async (key) => {
      const stored = await translateBlobErrors(() => bringIn(key));
      return { stored, facts: await this.factsOfStored(key, target.relativeName, stored.sizeBytes) };
    });
  }

  // --- Direct uploads -------------------------------------------------------------------------

  /**
   * Starts a direct upload: the client PUTs the parts to the returned URLs (S3, or this server's
   * upload route on the embedded store) and then calls completeUpload. Works on every backend.
   */
  async beginUpload(
    caller: Caller,
    target: { projectId: string; jobId: string; nodeRank: number; relativeName: string },
    declared: { sizeBytes: number; sha256: string | null },
  ): Promise<{ upload: UploadRecord; plan: DirectUploadPlan }> {
    assertRelativeName(target.relativeName);
    if (!Number.isSafeInteger(declared.sizeBytes) || declared.sizeBytes < 0 || declared.sizeBytes > MAX_FILE_BYTES)
      throw badRequest(`size_bytes must be an integer from 0 to ${MAX_FILE_BYTES}`);
    if (declared.sha256 !== null && !isSha256Hex(declared.sha256)) throw badRequest("sha256 must be 64 lowercase hex characters");
    await this.getJob(caller, target.projectId, target.jobId);
    await this.refuseConflicts(target);
    const uploadId = newId(20);
    const ttl = Math.min(this.limits.urlTtlSeconds, MAX_UPLOAD_TTL_SECONDS);
    const plan = await translateBlobErrors(() => this.blobs.beginDirectUpload(uploadId, declared.sizeBytes, ttl));
    const upload = await this.metadata.createUpload({
      uploadId,
      orgId: caller.orgId,
      projectId: target.projectId,
      jobId: target.jobId,
      nodeRank: target.nodeRank,
      relativeName: target.relativeName,
      sizeBytes: declared.sizeBytes,
      sha256: declared.sha256,
      partSizeBytes: plan.partSizeBytes,
      partCount: plan.parts.length,
      backendUploadId: plan.backendUploadId,
      expiresAt: new Date(Date.now() + ttl * 1000).toISOString(),
    });
    return { upload, plan };
  }

  /** `sha256`: the digest, if the client did not declare it at the start (it hashed while sending). */
  async completeUpload(
    caller: Caller,
    projectId: string,
    jobId: string,
    uploadId: string,
    parts: UploadedPartRef[],
    sha256: string | null = null,
  ): Promise<FileRecord> {
    if (sha256 !== null && !isSha256Hex(sha256)) throw badRequest("sha256 must be 64 lowercase hex characters");
    await this.getJob(caller, projectId, jobId);
    const upload = await this.metadata.getUpload(caller.orgId, jobId, uploadId);
    if (!upload) throw notFound("upload");
    if (sha256 !== null && upload.sha256 !== null && sha256 !== upload.sha256)
      throw badRequest("sha256 differs from the one declared when the upload began");
    const expectedSha256 = upload.sha256 ?? sha256;
    // Claim it first: of two racing completions only one gets here, and a failed completion
    // cannot be retried with the same (possibly already assembled) parts.
    if (!(await this.metadata.deleteUpload(uploadId))) throw notFound("upload");
    try {
      await this.refuseConflicts(upload);
      return await this.storeVersion(upload, async (key) => {
        const stored = await translateBlobErrors(() => this.blobs.completeDirectUpload(upload, parts, key, expectedSha256));
        return { stored, facts: await this.factsOfStored(key, upload.relativeName, stored.sizeBytes) };
      });
    } catch (err) {
      await this.blobs.abortDirectUpload(upload).catch(() => {});
      throw err;
    }
  }

  async abortUpload(caller: Caller, projectId: string, jobId: string, uploadId: string): Promise<void> {
    await this.getJob(caller, projectId, jobId);
    const upload = await this.metadata.getUpload(caller.orgId, jobId, uploadId);
    if (!upload || !(await this.metadata.deleteUpload(uploadId))) throw notFound("upload");
    await this.blobs.abortDirectUpload(upload);
  }

  /** For the embedded store's part route, which is authorised by its URL signature alone. */
  async uploadForPart(uploadId: string): Promise<UploadRecord | null> {
    const upload = await this.metadata.getUploadById(uploadId);
    return upload && upload.expiresAt > new Date().toISOString() ? upload : null;
  }

  /** Aborts direct uploads whose URLs have expired; returns how many. */
  async expireUploads(now = new Date()): Promise<number> {
    let expired = 0;
    for (const upload of await this.metadata.listExpiredUploads(now.toISOString())) {
      if (!(await this.metadata.deleteUpload(upload.uploadId))) continue;
      await this.blobs.abortDirectUpload(upload).catch(() => {});
      expired++;
    }
    return expired;
  }

  async listFiles(caller: Caller, projectId: string, jobId: string, pageToken: number, pageSize: number): Promise<FilePage> {
    const { job } = await this.getJob(caller, projectId, jobId);
    const limit = Math.min(pageSize, this.limits.maxPageSize);
    // page_token is the position of the page's first file. Positions are dense until a
    // retention delete leaves gaps; one row beyond the page says where the next page starts.
    const fetched = await this.metadata.listFiles(jobId, pageToken, limit + 1);
    const rows = fetched.slice(0, limit);
    const now = new Date();
    const files = rows.map((file) => ({
      file,
      url: this.presignFile(projectId, file, now),
    }));
    // The count read with the job may trail a commit that landed since; never report fewer
    // files than this page proves exist.
    const totalCount = Math.max(job.fileCount, rows.length);
    const nextPageToken = fetched.length > limit ? fetched[limit]!.seq : null;
    return { files, nextPageToken, totalCount };
  }

  /** The presigned download URL of a listed file: its version's key, so it never serves another version's bytes. */
  presignFile(projectId: string, file: FileRecord, now = new Date()): string {
    return this.blobs.presignGet(blobKeyOfFile(projectId, file), this.limits.urlTtlSeconds, now);
  }

  /**
   * A page of a checkpoint's tensors as indexed at commit (see inspection.ts), optionally of one
   * file (by relative name, any rank). An unknown checkpoint or file is a 404.
   */
  async checkpointTensors(
    caller: Caller,
    projectId: string,
    jobId: string,
    checkpointId: string,
    page: { pageToken: number; pageSize: number; fileName?: string },
  ): Promise<CheckpointTensorsPage> {
    await this.getJob(caller, projectId, jobId);
    let rows = checkpointIdOf(`${checkpointId}/x`) !== checkpointId ? [] : await this.metadata.listCheckpointFilesWithFacts(jobId, checkpointId);
    if (rows.length === 0) throw notFound("checkpoint");
    if (page.fileName !== undefined) {
      rows = rows.filter((r) => r.file.relativeName === page.fileName);
      if (rows.length === 0) throw notFound("file in this checkpoint");
    }
    const pageSize = Math.min(page.pageSize, this.limits.maxPageSize);
    return pageCheckpointTensors(checkpointId, rows, (rank, name) => this.metadata.factsDetail(jobId, rank, name), page.pageToken, pageSize);
  }

  // --- Checkpoints: completeness, aliases, pins, retention -----------------------------------

  /**
   * What a committed file tells about its checkpoint beyond its name (the name rules ran in the
   * commit's transaction): a trainer_state.json's metrics, a safetensors index's shards, a shard's
   * declared size, DeepSpeed's `latest`. Reads only that file's own bytes (a header, a small JSON),
   * never the job's listing. A failure here never fails the upload: the file is committed, and the
   * checkpoint can still be completed by a marker, the job ending or an explicit call.
   */
  private async afterCommit(jobId: string, file: FileRecord, before: CheckpointSummary | null): Promise<void> {
    try {
      const checkpointId = checkpointIdOf(file.relativeName);
      const projectId = await this.projectOfJob(jobId);
      if (projectId === null) return;
      const key = blobKeyOfFile(projectId, file);
      if (checkpointId === null) {
        if (isDeepSpeedLatest(file.relativeName) && file.sizeBytes <= 4096) {
          const tag = (await this.readBytes(key, file.sizeBytes)).toString("utf8").trim();
          if (checkpointIdOf(`${tag}/x`) === tag) await this.metadata.completeCheckpoint(jobId, tag, "deepspeed-latest");
        }
      } else {
        const inside = nameInCheckpoint(file.relativeName)!;
        if (inside === "trainer_state.json" && file.sizeBytes <= MAX_MARKER_JSON_BYTES) {
          const summary = summarizeTrainerState(JSON.parse((await this.readBytes(key, file.sizeBytes)).toString("utf8")));
          if (summary) await this.metadata.setTrainerState(jobId, checkpointId, summary);
        }
        if (isSafetensorsIndex(file.relativeName) && file.sizeBytes <= MAX_MARKER_JSON_BYTES) {
          const shards = shardsOfIndex(JSON.parse((await this.readBytes(key, file.sizeBytes)).toString("utf8")));
          const folder = file.relativeName.slice(0, file.relativeName.lastIndexOf("/") + 1);
          const names = (shards ?? []).map((shard) => folder + shard).filter((name) => checkpointIdOf(name) === checkpointId && !name.split("/").includes(".."));
          const present = await this.metadata.setRequirements(jobId, checkpointId, file.nodeRank, names);
          for (const shard of present) await this.checkShard(projectId, jobId, file.nodeRank, shard.relativeName, shard.sizeBytes);
        } else if (file.relativeName.endsWith(".safetensors") && (before?.hasIndex ?? false)) {
          await this.checkShard(projectId, jobId, file.nodeRank, file.relativeName, file.sizeBytes);
        }
      }
      const job = await this.jobRecord(jobId);
      if (job && TERMINAL_STATUSES.has(job.status)) await this.settleCheckpoints(job);
      if (checkpointId !== null && before?.state !== "COMPLETE") {
        const after = await this.metadata.getCheckpoint(jobId, checkpointId);
        if (after?.state === "COMPLETE") await this.applyRetentionIfAuto(projectId);
      }
    } catch {
      // See the method's comment: completeness checks are best-effort beyond the commit itself.
    }
  }

  /** A shard counts once its size is the one its own safetensors header declares. */
  private async checkShard(projectId: string, jobId: string, nodeRank: number, relativeName: string, sizeBytes: number): Promise<void> {
    // The version listed now (a concurrent replacement may delete it mid-read: then its own commit checks it).
    const file = await this.metadata.getFile(jobId, nodeRank, relativeName);
    if (!file || file.sizeBytes !== sizeBytes) return;
    const key = blobKeyOfFile(projectId, file);
    const lengthBytes = await this.readBytes(key, Math.min(8, sizeBytes));
    if (lengthBytes.length < 8) return;
    const headerLength = Number(lengthBytes.readBigUInt64LE(0));
    if (headerLength > MAX_SAFETENSORS_HEADER_BYTES || 8 + headerLength > sizeBytes) return;
    const declared = safetensorsDeclaredSize(await this.readBytes(key, 8 + headerLength));
    if (declared === sizeBytes) await this.metadata.meetRequirement(jobId, nodeRank, relativeName, sizeBytes);
  }

  private async readBytes(key: string, length: number): Promise<Buffer> {
    if (length <= 0) return Buffer.alloc(0);
    const chunks: Buffer[] = [];
    for await (const chunk of await this.blobs.read(key, { start: 0, end: length - 1 })) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** The project of a live job, from the job id alone (commits know only the job). */
  private async projectOfJob(jobId: string): Promise<string | null> {
    return (await this.jobRecord(jobId))?.projectId ?? null;
  }

  private async jobRecord(jobId: string): Promise<JobRecord | null> {
    return this.metadata.getJobById(jobId);
  }

  /** A job that ended completes (or gives up on) its checkpoints still WRITING; those with a direct upload open wait for it. */
  private async settleCheckpoints(job: JobRecord): Promise<void> {
    const change = stateWhenJobEnds(job.status);
    if (!change) return;
    const open = new Set<string>();
    for (const name of await this.metadata.openUploadNames(job.id)) {
      const id = checkpointIdOf(name);
      if (id !== null) open.add(id);
    }
    const changed = await this.metadata.settleCheckpoints(job.id, change, [...open]);
    if (changed.length > 0 && change.state === "COMPLETE") await this.applyRetentionIfAuto(job.projectId);
  }

  /** The job's checkpoints with their aliases, including the derived `best`. */
  async listCheckpoints(
    caller: Caller,
    projectId: string,
    jobId: string,
  ): Promise<{ job: JobRecord; project: ProjectRecord; checkpoints: ListedCheckpoint[]; facts: Map<string, CheckpointFacts> }> {
    const { job, project } = await this.getJob(caller, projectId, jobId);
    const summaries = await this.metadata.summarizeCheckpoints(jobId);
    const aliases = await this.metadata.listAliases(projectId);
    const facts = checkpointFactsOf(await this.metadata.listFileFacts(jobId, LISTING_FACT_FORMATS));
    return { job, project, checkpoints: withAliases(summaries, jobId, aliases), facts };
  }

  async getCheckpoint(caller: Caller, projectId: string, jobId: string, checkpointId: string): Promise<ListedCheckpoint> {
    const { checkpoints } = await this.listCheckpoints(caller, projectId, jobId);
    const found = checkpoints.find((c) => c.checkpointId === checkpointId);
    if (!found) throw notFound("checkpoint");
    return found;
  }

  async completeCheckpoint(caller: Caller, projectId: string, jobId: string, checkpointId: string): Promise<ListedCheckpoint> {
    await this.getJob(caller, projectId, jobId);
    const before = await this.metadata.getCheckpoint(jobId, checkpointId);
    if (!before || !(await this.metadata.completeCheckpoint(jobId, checkpointId, "explicit"))) throw notFound("checkpoint");
    if (before.state !== "COMPLETE") await this.applyRetentionIfAuto(projectId);
    return this.getCheckpoint(caller, projectId, jobId, checkpointId);
  }

  async setPinned(caller: Caller, projectId: string, jobId: string, checkpointId: string, pinned: boolean): Promise<ListedCheckpoint> {
    await this.getJob(caller, projectId, jobId);
    if (!(await this.metadata.setPinned(jobId, checkpointId, pinned))) throw notFound("checkpoint");
    return this.getCheckpoint(caller, projectId, jobId, checkpointId);
  }

  async listAliases(caller: Caller, projectId: string): Promise<AliasRecord[]> {
    await this.requireProject(caller, projectId);
    return this.metadata.listAliases(projectId);
  }

  async setAlias(caller: Caller, projectId: string, name: string, jobId: string, checkpointId: string): Promise<AliasRecord> {
    assertAliasName(name);
    // Ids never hold NUL (PostgreSQL refuses it in text): such a body names nothing.
    if (jobId.includes("\u0000")) throw notFound("training job");
    await this.getJob(caller, projectId, jobId);
    if (checkpointId.includes("\u0000")) throw notFound("checkpoint");
    const alias = await this.metadata.setAlias(projectId, name, jobId, checkpointId);
    if (alias === "checkpoint-gone") throw notFound("checkpoint");
    await this.audit(caller, { action: AUDIT_ACTIONS.aliasMoved, subject: projectId, details: { name, training_job_id: jobId, checkpoint_id: checkpointId } });
    return alias;
  }

  async removeAlias(caller: Caller, projectId: string, name: string): Promise<void> {
    assertAliasName(name);
    await this.requireProject(caller, projectId);
    if (!(await this.metadata.removeAlias(projectId, name))) throw notFound("alias");
    await this.audit(caller, { action: AUDIT_ACTIONS.aliasRemoved, subject: projectId, details: { name } });
  }

  async aliasHistory(caller: Caller, projectId: string, name: string): Promise<AliasHistoryEntry[]> {
    assertAliasName(name);
    await this.requireProject(caller, projectId);
    const history = await this.metadata.aliasHistory(projectId, name);
    if (history.length === 0) throw notFound("alias");
    return history;
  }

  async getRetentionPolicy(caller: Caller, projectId: string): Promise<RetentionPolicy> {
    await this.requireProject(caller, projectId);
    return (await this.metadata.getRetentionPolicy(projectId)) ?? EMPTY_POLICY;
  }

  async putRetentionPolicy(caller: Caller, projectId: string, policy: RetentionPolicy): Promise<RetentionPolicy> {
    await this.requireProject(caller, projectId);
    if ((policy.keepBest === null) !== (policy.metric === null)) throw badRequest("keep_best and metric go together: give both or neither");
    if (policy.metric !== null && !/^[A-Za-z0-9_.\/-]{1,256}$/.test(policy.metric))
      throw badRequest("metric is a trainer_state.json log_history key: letters, digits, '_', '.', '-' or '/'");
    await this.metadata.putRetentionPolicy(projectId, policy);
    return policy;
  }

  async planRetention(caller: Caller, projectId: string): Promise<{ policy: RetentionPolicy; plan: RetentionPlan }> {
    await this.requireProject(caller, projectId);
    return this.retentionPlanOf(projectId, caller.orgId);
  }

  private async retentionPlanOf(projectId: string, orgId: string): Promise<{ policy: RetentionPolicy; plan: RetentionPlan }> {
    const policy = (await this.metadata.getRetentionPolicy(projectId)) ?? EMPTY_POLICY;
    const aliases = await this.metadata.listAliases(projectId);
    const jobs: RetentionCandidate[][] = [];
    for (const job of await this.metadata.listJobs(orgId, projectId)) {
      const listed = withAliases(await this.metadata.summarizeCheckpoints(job.id), job.id, aliases);
      jobs.push(
        listed.map((c) => ({
          jobId: job.id,
          checkpointId: c.checkpointId,
          state: c.state,
          createdAt: c.createdAt,
          sizeBytes: c.sizeBytes,
          fileCount: c.fileCount,
          pinned: c.pinned,
          aliases: c.aliases,
          metrics: c.trainerState?.metrics ?? {},
        })),
      );
    }
    return { policy, plan: planRetention(policy, jobs, new Date()) };
  }

  /**
   * Deletes what the plan deletes now; with `expected` (the plan a user reviewed), only the
   * checkpoints in both, so nothing is deleted that was not shown. Each delete happens once
   * even when several servers apply at the same time (beginCheckpointDelete is the arbiter).
   */
  async applyRetention(
    caller: Caller | null,
    projectId: string,
    expected?: { jobId: string; checkpointId: string }[],
  ): Promise<{ deleted: RetentionCandidate[]; bytesFreed: number }> {
    const orgId = caller ? (await this.requireProject(caller, projectId)).orgId : await this.orgOfProject(projectId);
    if (orgId === null) return { deleted: [], bytesFreed: 0 };
    const { plan } = await this.retentionPlanOf(projectId, orgId);
    const wanted = expected ? new Set(expected.map((e) => `${e.jobId}\u0000${e.checkpointId}`)) : null;
    const deleted: RetentionCandidate[] = [];
    for (const c of plan.delete) {
      if (wanted && !wanted.has(`${c.jobId}\u0000${c.checkpointId}`)) continue;
      if (await this.deleteCheckpoint(projectId, c.jobId, c.checkpointId)) deleted.push(c);
    }
    const bytesFreed = deleted.reduce((n, c) => n + c.sizeBytes, 0);
    if (deleted.length > 0 || caller !== null)
      await this.audit(caller ?? { system: "retention --auto" }, {
        action: AUDIT_ACTIONS.retentionApplied,
        orgId,
        subject: projectId,
        details: {
          deleted: deleted.map((c) => `${c.jobId}/${c.checkpointId}`).join(" "),
          checkpoints_deleted: deleted.length,
          bytes_freed: bytesFreed,
        },
      });
    return { deleted, bytesFreed };
  }

  private async applyRetentionIfAuto(projectId: string): Promise<void> {
    const policy = await this.metadata.getRetentionPolicy(projectId);
    if (policy?.auto) await this.applyRetention(null, projectId);
  }

  private async orgOfProject(projectId: string): Promise<string | null> {
    return this.metadata.orgOfProject(projectId);
  }

  /**
   * Crash-safe like a job delete: the checkpoint's files are unlisted in one transaction (from
   * then on it is wholly gone), then its blobs are removed and its rows purged. A crash between
   * the steps leaves it marked, and recover() finishes it on the next start.
   */
  private async deleteCheckpoint(projectId: string, jobId: string, checkpointId: string): Promise<boolean> {
    const begun = await this.metadata.beginCheckpointDelete(jobId, checkpointId);
    if (!begun) return false;
    await this.finishCheckpointDelete({ projectId, jobId, checkpointId, nodeRanks: begun.nodeRanks });
    return true;
  }

  private async finishCheckpointDelete(deletion: { projectId: string; jobId: string; checkpointId: string; nodeRanks: number[] }): Promise<void> {
    for (const rank of deletion.nodeRanks) {
      // Every version of the checkpoint's files, and those committed before versioned keys.
      await this.blobs.deletePrefix(checkpointVersionsPrefix(deletion.projectId, deletion.jobId, rank, deletion.checkpointId));
      await this.blobs.deletePrefix(blobKeyOf(deletion.projectId, deletion.jobId, rank, `${deletion.checkpointId}/`));
    }
    await this.metadata.finishCheckpointDelete(deletion.jobId, deletion.checkpointId);
  }


  /** What the blob backend offers clients: whether direct-upload parts go via this API server. */
  get capabilities(): ServiceCapabilities {
    return { partsViaApiServer: this.blobs.capabilities.partsViaApiServer };
  }


  /**
   * For the presigned download route: the file behind a blob key, if that key is the version
   * listed now. The URL signature was already checked; this makes a deleted file (or job) and a
   * replaced version a 404 even if bytes linger, so a URL never serves a version its row does not describe.
   */
  async fileForBlobKey(key: string): Promise<FileRecord | null> {
    const parsed = parseAnyBlobKey(key);
    if (!parsed) return null;
    const file = await this.metadata.getFile(parsed.jobId, parsed.nodeRank, parsed.relativeName);
    return file && file.blobKey === (parsed.legacy ? null : key) ? file : null;
  }
}


const isJobStatus = (s: string): s is JobStatus => (JOB_STATUSES as readonly string[]).includes(s);

/** Checks a search request's values; the first order_by entry decides (created_at is the only field). */
function parseJobSearch(request: JobSearchRequest): JobSearch {
  const statuses = request.statuses ?? null;
  for (const status of statuses ?? [])
    if (!isJobStatus(status)) throw badRequest(`unknown status ${JSON.stringify(status)}: statuses are ${JOB_STATUSES.join(", ")}`);
  const orderBy = request.orderBy ?? [{ field: "created_at", order: "desc" }];
  for (const { field, order } of orderBy) {
    if (!(JOB_SEARCH_ORDER_FIELDS as readonly string[]).includes(field))
      throw badRequest(`cannot order by ${JSON.stringify(field)}: order_by.field is one of ${JOB_SEARCH_ORDER_FIELDS.join(", ")}`);
    if (order !== "asc" && order !== "desc") throw badRequest(`order_by.order must be "asc" or "desc" (got ${JSON.stringify(order)})`);
  }
  const first = orderBy[0];
  return {
    projectId: request.projectId ?? null,
    jobId: request.jobId ?? null,
    statuses: statuses && statuses.length > 0 ? (statuses as JobStatus[]) : null,
    orderBy: first ? { field: "created_at", order: first.order as "asc" | "desc" } : { field: "created_at", order: "desc" },
    limit: MAX_SEARCH_RESULTS,
  };
}

function assertAliasName(name: string): void {
  if (!ALIAS_NAME.test(name)) throw badRequest("an alias name is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit");
  if (name === BEST_ALIAS) throw badRequest("'best' is derived from trainer_state.json and cannot be set or removed by hand");
}

/**
 * The checkpoint `@best` names in one job: trainer_state.json's best_model_checkpoint in the
 * newest state the job reported (highest global_step), or, when it names none, the checkpoint
 * whose own eval metric equals the reported best_metric. Null when the framework reports neither.
 */
function bestCheckpointOf(checkpoints: readonly CheckpointSummary[]): string | null {
  let newest: CheckpointSummary | null = null;
  for (const c of checkpoints)
    if (c.trainerState && (newest === null || (c.trainerState.globalStep ?? -1) >= (newest.trainerState!.globalStep ?? -1))) newest = c;
  const state = newest?.trainerState;
  if (!state) return null;
  const ids = new Set(checkpoints.map((c) => c.checkpointId));
  if (state.bestCheckpoint !== null) return ids.has(state.bestCheckpoint) ? state.bestCheckpoint : null;
  if (state.bestMetric === null) return null;
  const match = checkpoints.find((c) =>
    Object.entries(c.trainerState?.metrics ?? {}).some(([key, value]) => key.startsWith("eval_") && value === state.bestMetric),
  );
  return match?.checkpointId ?? null;
}

function withAliases(summaries: CheckpointSummary[], jobId: string, aliases: readonly AliasRecord[]): ListedCheckpoint[] {
  const best = bestCheckpointOf(summaries);
  return summaries.map((c) => ({
    ...c,
    aliases: [
      ...(c.checkpointId === best ? [BEST_ALIAS] : []),
      ...aliases.filter((a) => a.jobId === jobId && a.checkpointId === c.checkpointId).map((a) => a.name),
    ],
  }));
}
