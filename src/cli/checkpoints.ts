import type { Command } from "commander";
import { clientFrom, formatBytes, resolveProjectAndJob, table, withRemoteOptions } from "./common.js";
import { outputOption, printable, printJson } from "./output.js";

export function registerCheckpoints(program: Command): void {
  withRemoteOptions(
    program
      .command("checkpoints")
      .description("list a job's checkpoints with their sizes")
      .requiredOption("--project <nameOrId>", "training project (name or id)")
      .option("--job <id>", "training job id (default: the project's latest job)")
      .addOption(outputOption(["table", "json"])),
  ).action(async (opts) => {
    const client = clientFrom(opts);
    const { project, job } = await resolveProjectAndJob(client, opts.project, opts.job);
    const checkpoints = await client.listCheckpoints(project.id, job.id);
    if (opts.output === "json") return printJson(checkpoints);
    process.stdout.write(
      table([
        ["CHECKPOINT", "TYPE", "SIZE", "CREATED"],
        ...checkpoints.map((c) => [printable(c.checkpoint_id), c.checkpoint_type, formatBytes(c.size_bytes), c.created_at]),
      ]),
    );
  });
}
