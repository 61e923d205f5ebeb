import type { Command } from "commander";
import { loadServerConfig, parseS3Url } from "../config.js";
import { ApiError } from "../domain/errors.js";
import * as imports from "../domain/import.js";
import type { Caller, CkptService } from "../domain/service.js";
import type { ProjectRecord } from "../domain/types.js";
import { openRuntime } from "./server-runtime.js";
import { CliError } from "./common.js";

export { placeImportedObject } from "../domain/import.js";

/** `s3://bucket/some/prefix` → bucket and a prefix that is "" or ends with "/". */
function parseSource(url: string): { bucket: string; prefix: string } {
  try {
    return parseS3Url(url);
  } catch (err) {
    throw new CliError(`source must look like s3://bucket/prefix: ${(err as Error).message}`);
  }
}

/** The domain's resolveImportProject, its "no such id" said in terms of this command's flags. */
export async function resolveImportProject(service: CkptService, opts: { org?: string; project: string }): Promise<{ caller: Caller; project: ProjectRecord }> {
  try {
    return await imports.resolveImportProject(service, opts);
  } catch (err) {
    if (err instanceof ApiError && err.statusCode === 404 && opts.org === undefined)
      throw new CliError(`${err.message}: to import into a project by name, give --org`);
    throw err;
  }
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
      const location = parseSource(source);
      const config = loadServerConfig({});
      if (config.blobStore.kind !== "s3") throw new CliError("import needs the S3 blob store (set CKPT_BLOB_STORE=s3://...)");
      const runtime = await openRuntime(config);
      try {
        const { service } = runtime;
        const { caller, project } = await resolveImportProject(service, { org: opts.org, project: opts.project });
        // A dry run changes nothing, so it names the job it would create instead of creating it.
        const job = opts.job
          ? (await service.getJob(caller, project.id, opts.job)).job
          : opts.dryRun
            ? null
            : (await service.createJob(caller, project.id, { name: `import ${source}` })).job;
        const report = await imports.importObjects(service, {
          caller,
          project,
          job,
          source: location,
          dryRun: Boolean(opts.dryRun),
          onPlanned: (file) => process.stdout.write(`rank ${file.nodeRank}  ${file.relativeName}  (${file.sizeBytes} B)\n`),
        });
        const jobLabel = job ? job.id : "(a new job)";
        process.stderr.write(
          `${opts.dryRun ? "would import into" : `imported ${report.imported} files (${report.bytes} bytes) into`} project ${project.id}, job ${jobLabel}\n`,
        );
        if (report.skipped.length) process.stderr.write(`skipped ${report.skipped.length}:\n  ${report.skipped.join("\n  ")}\n`);
        if (job) process.stdout.write(`${job.id}\n`);
      } finally {
        await runtime.close();
      }
    });
}
