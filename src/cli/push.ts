import type { Command } from "commander";
import { stat } from "node:fs/promises";
import { MAX_NODE_RANK } from "../domain/names.js";
import { uploadFolder, UploadPlanError, type UploadEvent } from "../client/upload/upload-folder.js";
import { CliError, clientFrom, formatBytes, parseIntegerOption, withRemoteOptions } from "./common.js";
import { printable } from "./output.js";

export function registerPush(program: Command): void {
  withRemoteOptions(
    program
      .command("push <dir>")
      .description("upload every file under DIR as checkpoint files of a job (paths relative to DIR)")
      .requiredOption("--project <nameOrId>", "training project (name or id)")
      .requiredOption("--job <id>", "training job id")
      .option("--node-rank <n>", "node rank of these files", parseIntegerOption("--node-rank", 0, MAX_NODE_RANK), 0)
      .option("--concurrency <n>", "files uploaded at once", parseIntegerOption("--concurrency", 1, 256), 8)
      .option("--via-server", "stream every file through the API server (one PUT each), not only the small ones")
      .option("--quiet", "print nothing but errors"),
  ).action(async (dir: string, opts) => {
    const client = clientFrom(opts);
    if (!(await stat(dir).catch(() => null))?.isDirectory()) throw new CliError(`${dir} is not a directory`);
    const project = await client.resolveProject(opts.project);
    const job = await client.getJob(project.id, opts.job);
    const summary = await uploadFolder({
      client,
      projectId: project.id,
      jobId: job.id,
      nodeRank: opts.nodeRank,
      dir,
      concurrency: opts.concurrency,
      viaServer: opts.viaServer === true,
      onEvent: reportPushEvent(opts.quiet === true),
    }).catch((err: Error) => {
      throw err instanceof UploadPlanError ? new CliError(err.message) : err;
    });
    if (!opts.quiet)
      process.stderr.write(
        `${summary.uploaded} uploaded (${formatBytes(summary.bytesUploaded)}), ${summary.skipped} already up to date, ${summary.failed.length} failed\n`,
      );
    if (summary.failed.length) throw new CliError(`failed to upload:\n  ${summary.failed.map((f) => `${printable(f.name)}: ${printable(f.message)}`).join("\n  ")}`);
  });
}

function reportPushEvent(quiet: boolean): (event: UploadEvent) => void {
  return (event) => {
    if (quiet) return;
    if (event.type === "uploaded") process.stderr.write(`uploaded ${printable(event.name)} (${formatBytes(event.size)})\n`);
    else if (event.type === "retrying") process.stderr.write(`retrying ${printable(event.name)} in ${(event.delayMs / 1000).toFixed(1)} s: ${printable(event.message)}\n`);
  };
}
