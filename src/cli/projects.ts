import type { Command } from "commander";
import { clientFrom, table, withRemoteOptions } from "./common.js";
import { outputOption, printable, printListing } from "./output.js";

export function registerProjects(program: Command): void {
  const projects = program.command("projects").description("list training projects, or create one");

  withRemoteOptions(
    projects
      .command("list", { isDefault: true })
      .description("list training projects (the default)")
      .addOption(outputOption()),
  ).action(async (opts) => {
    printListing(opts.output, await clientFrom(opts).listProjects(), (list) =>
      table([["ID", "NAME", "LATEST JOB", "UPDATED"], ...list.map((p) => [p.id, printable(p.name), p.latest_job?.id ?? "-", p.updated_at])]),
    );
  });

  withRemoteOptions(
    projects.command("create <name>").description("create a training project (or find the one of that name); prints its id"),
  ).action(async (name: string, opts) => {
    const project = await clientFrom(opts).upsertProject(name);
    process.stdout.write(`${project.id}\n`);
  });
}
