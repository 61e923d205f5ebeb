import type { Command } from "commander";
import { stat } from "node:fs/promises";
import { MAX_NODE_RANK } from "../domain/names.js";
import { uploadFolder, UploadPlanError, type UploadEvent } from "../client/upload/upload-folder.js";
import { CliError, clientFrom, formatBytes, parseIntegerOption, withRemoteOptions } from "./common.js";
import { printable } from "./output.js";
import { createReporter, quietOption, type Reporter } from "./reporter.js";
import { finishingMessage, handleInterrupts } from "./interrupt.js";

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
      .addOption(quietOption()),
  ).action(async (dir: string, opts) => {
    const client = clientFrom(opts);
    if (!(await stat(dir).catch(() => null))?.isDirectory()) throw new CliError(`${dir} is not a directory`);
    const project = await client.resolveProject(opts.project);
    const job = await client.getJob(project.id, opts.job);
    const reporter = createReporter({ quiet: opts.quiet === true });
    // The first Ctrl-C starts no new file and lets the ones in flight end; a rerun skips what was uploaded.
    const interrupts = handleInterrupts({ onFirst: (signal) => reporter.info(finishingMessage(signal)) });
    const summary = await uploadFolder({
      client,
      projectId: project.id,
      jobId: job.id,
      nodeRank: opts.nodeRank,
      dir,
      concurrency: opts.concurrency,
      viaServer: opts.viaServer === true,
      onEvent: reportPushEvent(reporter),
      signal: interrupts.signal,
    })
      .catch((err: Error) => {
        if (interrupts.signal.aborted) throw interrupts.error("interrupted: run the same command again (uploaded files are skipped)");
        throw err instanceof UploadPlanError ? new CliError(err.message) : err;
      })
      .finally(() => interrupts.dispose());
    reporter.info(`${summary.uploaded} uploaded (${formatBytes(summary.bytesUploaded)}), ${summary.skipped} already up to date, ${summary.failed.length} failed`);
    if (interrupts.signal.aborted) throw interrupts.error("interrupted: run the same command again (uploaded files are skipped)");
    if (summary.failed.length) throw new CliError(`failed to upload:\n  ${summary.failed.map((f) => `${printable(f.name)}: ${printable(f.message)}`).join("\n  ")}`);
  });
}

function reportPushEvent(reporter: Reporter): (event: UploadEvent) => void {
  return (event) => {
    if (event.type === "uploaded") reporter.info(`uploaded ${printable(event.name)} (${formatBytes(event.size)})`);
    else if (event.type === "retrying") reporter.info(`retrying ${printable(event.name)} in ${(event.delayMs / 1000).toFixed(1)} s: ${printable(event.message)}`);
  };
}
