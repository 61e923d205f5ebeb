import type { Command } from "commander";
import { resolveCheckpointRef } from "../client/checkpoint-ref.js";
import { clientFrom, formatBytes, resolveProjectAndJob, table, withRemoteOptions } from "./common.js";
import { quietOption } from "./reporter.js";
import { outputOption, printable, printJson, printJsonLines, printListing } from "./output.js";

export function registerCheckpoints(program: Command): void {
  const checkpoints = withRemoteOptions(
    program
      .command("checkpoints")
      .description("list a job's checkpoints (state, size, files, aliases, pins); complete, pin and unpin them")
      .requiredOption("--project <nameOrId>", "training project (name or id)")
      .option("--job <id>", "training job id (default: the project's latest job)")
      .addOption(outputOption())
      .addOption(quietOption()),
  ).action(async (opts) => {
    const client = clientFrom(opts);
    const { project, job } = await resolveProjectAndJob(client, opts.project, opts.job);
    printListing(opts.output, await client.listCheckpoints(project.id, job.id), (listed) =>
      table([
        ["CHECKPOINT", "STATE", "TYPE", "SIZE", "FILES", "ALIASES", "PINNED", "CREATED"],
        ...listed.map((c) => [
          printable(c.checkpoint_id),
          c.state ?? "-",
          c.checkpoint_type,
          formatBytes(c.size_bytes),
          c.file_count === undefined ? "-" : String(c.file_count),
          (c.aliases ?? []).map((a) => `@${printable(a)}`).join(",") || "-",
          c.pinned ? "yes" : "-",
          c.created_at,
        ]),
      ]),
    );
  });

  // The subcommands take the options of `ckpt checkpoints` (--project, --job, -o, --api-*), given before or after them.
  const act = (name: string, description: string, run: (client: ReturnType<typeof clientFrom>, p: string, j: string, c: string) => Promise<unknown>) =>
    checkpoints
      .command(`${name} <checkpoint>`)
      .description(`${description} (CHECKPOINT: an id, 'latest' or @ALIAS; --job is not needed with @ALIAS)`)
      .action(async (ref: string, _opts: unknown, command: Command) => {
      const opts = command.optsWithGlobals();
      const client = clientFrom(opts);
      const project = await client.resolveProject(opts.project);
      const target = await resolveCheckpointRef(client, project.id, ref, () => (opts.job ? client.getJob(project.id, opts.job) : client.latestJob(project.id)));
      const checkpoint = (await run(client, project.id, target.jobId, target.checkpointId)) as { checkpoint_id: string; state?: string; pinned?: boolean };
      if (opts.output === "json") return printJson(checkpoint);
      if (opts.output === "jsonl") return printJsonLines([checkpoint]);
      process.stdout.write(`${printable(checkpoint.checkpoint_id)} (job ${target.jobId}): ${checkpoint.state}${checkpoint.pinned ? ", pinned" : ""}\n`);
      });

  act("complete", "mark a checkpoint COMPLETE (for training code that writes no marker ckpt recognises)", (c, p, j, id) => c.completeCheckpoint(p, j, id));
  act("pin", "pin a checkpoint: retention never deletes it", (c, p, j, id) => c.pinCheckpoint(p, j, id));
  act("unpin", "unpin a checkpoint", (c, p, j, id) => c.unpinCheckpoint(p, j, id));
}
