import { ApiError, badRequest, notFound } from "./errors.js";
import { MAX_NODE_RANK, relativeNameProblem } from "./names.js";
import type { Caller, CkptService } from "./service.js";
import type { JobRecord, ProjectRecord } from "./types.js";

/**
 * Adopting objects that already exist in a bucket as checkpoint files (`ckpt admin import`):
 * where each object goes, which project and organisation it goes to, and the import itself,
 * through the blob store's optional adoption capability (S3 has it; the local store does not).
 */

/** Where an object under the source prefix goes: `rank-N/<name>` → rank N; anything else → rank 0. */
export function placeImportedObject(relativeKey: string): { nodeRank: number; relativeName: string } {
  const m = /^rank-(0|[1-9][0-9]{0,4})\/(.+)$/s.exec(relativeKey);
  if (m && Number(m[1]) <= MAX_NODE_RANK) return { nodeRank: Number(m[1]), relativeName: m[2]! };
  return { nodeRank: 0, relativeName: relativeKey };
}

/**
 * The project to import into, and the organisation to act as. A project id names its
 * organisation, so `org` is needed only for a project name (which is created when new). With
 * `org`, an id of one of that organisation's projects is taken as the id, anything else as a name.
 * An unknown id without `org` is a 404.
 */
export async function resolveImportProject(
  service: CkptService,
  opts: { org?: string; project: string },
): Promise<{ caller: Caller; project: ProjectRecord }> {
  if (opts.org === undefined) {
    const project = await service.metadata.getProjectById(opts.project);
    if (!project) throw new ApiError(404, "NOT_FOUND", `no training project with id '${opts.project}'`);
    // An admin acts as the organisation, through the same service rules as its API keys.
    return { caller: { orgId: project.orgId, keyId: "admin" }, project };
  }
  const org = await service.metadata.ensureOrganisation(opts.org);
  const caller = { orgId: org.id, keyId: "admin" };
  const byId = await service.metadata.getProject(org.id, opts.project);
  return { caller, project: byId ?? (await service.upsertProject(caller, opts.project)).project };
}

export interface ImportRequest {
  caller: Caller;
  project: ProjectRecord;
  /** The job the files join; null for a dry run that would create one. */
  job: JobRecord | null;
  source: { bucket: string; prefix: string };
  /** List what would be imported (through `onPlanned`), change nothing. */
  dryRun: boolean;
  /** In a dry run, each object that would be imported, as it is reached. */
  onPlanned?: (file: { nodeRank: number; relativeName: string; sizeBytes: number }) => void;
}

export interface ImportReport {
  imported: number;
  bytes: number;
  /** `<object key>: <why>`, one per object left out. */
  skipped: string[];
}

/**
 * Registers every object under the source prefix as a file of the job, with the same name rules,
 * tenancy and conflict checks as an upload (CkptService.importFile); the bytes are copied inside
 * the object store, never through ckpt. An object that cannot be imported is skipped and named.
 */
export async function importObjects(service: CkptService, request: ImportRequest): Promise<ImportReport> {
  const adoption = service.blobs.adoption;
  if (!adoption) throw badRequest("import needs a blob store that can adopt objects (the S3 store)");
  if (!request.dryRun && !request.job) throw notFound("job");
  const { bucket, prefix } = request.source;
  const report: ImportReport = { imported: 0, bytes: 0, skipped: [] };
  for await (const object of adoption.listObjects({ bucket, prefix })) {
    const relativeKey = object.key.slice(prefix.length);
    if (relativeKey === "" || relativeKey.endsWith("/")) continue;
    const target = { projectId: request.project.id, jobId: request.job?.id ?? "", ...placeImportedObject(relativeKey) };
    const problem = relativeNameProblem(target.relativeName);
    if (problem) {
      report.skipped.push(`${object.key}: ${problem}`);
      continue;
    }
    if (request.dryRun) {
      request.onPlanned?.({ nodeRank: target.nodeRank, relativeName: target.relativeName, sizeBytes: object.sizeBytes });
      continue;
    }
    try {
      const file = await service.importFile(request.caller, target, (key) => adoption.adoptObject({ bucket, key: object.key }, key));
      report.imported++;
      report.bytes += file.sizeBytes;
    } catch (err) {
      report.skipped.push(`${object.key}: ${(err as Error).message}`);
    }
  }
  return report;
}
