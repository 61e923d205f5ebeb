import type { Command } from "commander";
import { loadServerConfig } from "../config.js";
import { relativeNameProblem } from "../domain/names.js";
import type { Caller, CkptService } from "../domain/service.js";
import type { ProjectRecord } from "../domain/types.js";
import { openRuntime } from "./server-runtime.js";
import type { S3BlobStore } from "../stores/blobs/s3.js";
import { CliError } from "./common.js";

/** `s3://bucket/some/prefix` → bucket and a prefix that is "" or ends with "/". */
function parseSource(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/?#]+)\/?([^?#]*)$/.exec(url);
  if (!m) throw new CliError(`source must look like s3://bucket/prefix (got '${url}')`);
  const prefix = m[2]!.replace(/^\/+/, "");
  return { bucket: m[1]!, prefix: prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/` };
}

/** Where an object under the source prefix goes: `rank-N/<name>` → rank N; anything else → rank 0. */
export function placeImportedObject(relativeKey: string): { nodeRank: number; relativeName: string } {
  const m = /^rank-(0|[1-9][0-9]{0,4})\/(.+)$/s.exec(relativeKey);
  if (m && Number(m[1]) <= 65535) return { nodeRank: Number(m[1]), relativeName: m[2]! };
  return { nodeRank: 0, relativeName: relativeKey };
}

/**
 * The project to import into, and the organisation to act as. A project id names its
 * organisation, so `--org` is needed only for a project name (which is created when new). With
 * `--org`, an id of one of that organisation's projects is taken as the id, anything else as a name.
 */
export async function resolveImportProject(
  service: CkptService,
  opts: { org?: string; project: string },
): Promise<{ caller: Caller; project: ProjectRecord }> {
  if (opts.org === undefined) {
    const project = await service.metadata.getProjectById(opts.project);
    if (!project) throw new CliError(`no training project with id '${opts.project}': to import into a project by name, give --org`);
    // An admin acts as the organisation, through the same service rules as its API keys.
    return { caller: { orgId: project.orgId, keyId: "admin" }, project };
  }
  const org = await service.metadata.ensureOrganisation(opts.org);
  const caller = { orgId: org.id, keyId: "admin" };
  const byId = await service.metadata.getProject(org.id, opts.project);
  return { caller, project: byId ?? (await service.upsertProject(caller, opts.project)).project };
}

export function registerAdminImport(admin: Command): void {
  admin
    .command("import <source>")
    .description("register objects that already exist in a bucket (s3://bucket/prefix) as checkpoint files of a job")
    .option("--org <name>", "organisation that owns the project (needed only when --project is a name)")
    .requiredOption("--project <nameOrId>", "training project (name or id; created if a name is new)")
    .option("--job <id>", "training job id (default: a new job named after the source)")
    .option("--dry-run", "list what would be imported, change nothing")
    .action(async (source: string, opts) => {
      const { bucket, prefix } = parseSource(source);
      const config = loadServerConfig({});
      if (config.blobStore.kind !== "s3") throw new CliError("import needs the S3 blob store (set CKPT_BLOB_STORE=s3://...)");
      const runtime = await openRuntime(config);
      try {
        const { service } = runtime;
        const store = service.blobs as S3BlobStore;
        const { caller, project } = await resolveImportProject(service, { org: opts.org, project: opts.project });
        // A dry run changes nothing, so it names the job it would create instead of creating it.
        const job = opts.job
          ? (await service.getJob(caller, project.id, opts.job)).job
          : opts.dryRun
            ? null
            : (await service.createJob(caller, project.id, { name: `import ${source}` })).job;
        const jobLabel = job ? job.id : "(a new job)";

        let imported = 0;
        let bytes = 0;
        const skipped: string[] = [];
        for await (const object of store.listBucket(bucket, prefix)) {
          const relativeKey = object.key.slice(prefix.length);
          if (relativeKey === "" || relativeKey.endsWith("/") || relativeKey.startsWith(".ckpt-staging/")) continue;
          const target = { projectId: project.id, jobId: job?.id ?? "", ...placeImportedObject(relativeKey) };
          const problem = relativeNameProblem(target.relativeName);
          if (problem) {
            skipped.push(`${object.key}: ${problem}`);
            continue;
          }
          if (opts.dryRun || !job) {
            process.stdout.write(`rank ${target.nodeRank}  ${target.relativeName}  (${object.sizeBytes} B)\n`);
            continue;
          }
          try {
            const file = await service.importFile(caller, target, (key) => store.adoptObject(bucket, object.key, key));
            imported++;
            bytes += file.sizeBytes;
          } catch (err) {
            skipped.push(`${object.key}: ${(err as Error).message}`);
          }
        }
        process.stderr.write(`${opts.dryRun ? "would import into" : `imported ${imported} files (${bytes} bytes) into`} project ${project.id}, job ${jobLabel}\n`);
        if (skipped.length) process.stderr.write(`skipped ${skipped.length}:\n  ${skipped.join("\n  ")}\n`);
        if (job) process.stdout.write(`${job.id}\n`);
      } finally {
        await runtime.close();
      }
    });
}
