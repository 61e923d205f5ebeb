import type { Command } from "commander";
import { clientFrom, table, withRemoteOptions } from "./common.js";
import { outputOption, printable, printListing } from "./output.js";

export function registerJobs(program: Command): void {
  const jobs = program.command("jobs").description("list a project's training jobs, or create one");

  withRemoteOptions(
    jobs
      .command("list", { isDefault: true })
      .description("list a project's training jobs, newest first (the default)")
      .requiredOption("--project <nameOrId>", "training project (name or id)")
      .addOption(outputOption()),
  ).action(async (opts) => {
    const client = clientFrom(opts);
    const project = await client.resolveProject(opts.project);
    printListing(opts.output, await client.listJobs(project.id), (list) =>
      table([["ID", "NAME", "STATUS", "CREATED"], ...list.map((j) => [j.id, printable(j.name ?? "-"), j.current_status, j.created_at])]),
    );
  });

  withRemoteOptions(
    jobs
      .command("create")
      .description("create a training job in a project; prints its id")
      .requiredOption("--project <nameOrId>", "training project (name or id)")
      .option("--name <name>", "job name"),
  ).action(async (opts) => {
    const client = clientFrom(opts);
    const project = await client.resolveProject(opts.project);
    const job = await client.createJob(project.id, opts.name === undefined ? {} : { name: opts.name });
    process.stdout.write(`${job.id}\n`);
  });
}
