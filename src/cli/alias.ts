import type { Command } from "commander";
import { resolveCheckpointRef } from "../client/checkpoint-ref.js";
import { clientFrom, table, withRemoteOptions } from "./common.js";
import { outputOption, printable, printListing } from "./output.js";

/** `ckpt alias`: project-scoped names for checkpoints, usable as `--checkpoint @NAME` anywhere. */
export function registerAlias(program: Command): void {
  const alias = program.command("alias").description("project-scoped names for checkpoints (@NAME wherever a checkpoint is taken)");
  const withProject = (cmd: Command) => withRemoteOptions(cmd.requiredOption("--project <nameOrId>", "training project (name or id)"));

  withProject(
    alias
      .command("set <name>")
      .description("point NAME at a checkpoint (moves it if it exists; every move is kept)")
      .requiredOption("--checkpoint <ref>", "checkpoint id, 'latest' (newest COMPLETE) or @OTHER")
      .option("--job <id>", "training job id (default: the project's latest job)"),
  ).action(async (name: string, opts) => {
    const client = clientFrom(opts);
    const project = await client.resolveProject(opts.project);
    const target = await resolveCheckpointRef(client, project.id, opts.checkpoint, () => (opts.job ? client.getJob(project.id, opts.job) : client.latestJob(project.id)));
    const set = await client.setAlias(project.id, name, { training_job_id: target.jobId, checkpoint_id: target.checkpointId });
    process.stdout.write(`@${printable(set.name)} -> job ${set.training_job_id}, checkpoint ${printable(set.checkpoint_id)}\n`);
  });

  withProject(alias.command("ls").description("list the project's aliases").addOption(outputOption())).action(async (opts) => {
    const client = clientFrom(opts);
    printListing(opts.output, await client.listAliases((await client.resolveProject(opts.project)).id), (aliases) =>
      table([["ALIAS", "JOB", "CHECKPOINT", "UPDATED"], ...aliases.map((a) => [`@${printable(a.name)}`, a.training_job_id, printable(a.checkpoint_id), a.updated_at])]),
    );
  });

  withProject(alias.command("rm <name>").description("remove an alias (the removal is kept in its history)")).action(async (name: string, opts) => {
    const client = clientFrom(opts);
    await client.removeAlias((await client.resolveProject(opts.project)).id, name);
  });

  withProject(alias.command("history <name>").description("every move of an alias, oldest first").addOption(outputOption())).action(
    async (name: string, opts) => {
      const client = clientFrom(opts);
      printListing(opts.output, await client.aliasHistory((await client.resolveProject(opts.project)).id, name), (history) =>
        table([
          ["VERSION", "JOB", "CHECKPOINT", "CHANGED"],
          ...history.map((h) => [String(h.version), h.training_job_id ?? "(removed)", h.checkpoint_id === null ? "-" : printable(h.checkpoint_id), h.changed_at]),
        ]),
      );
    },
  );
}
