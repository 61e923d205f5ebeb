#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { registerAdmin } from "./admin.js";
import { registerCheckpoints } from "./checkpoints.js";
import { CliError, describeError } from "./common.js";
import { registerDownload } from "./download.js";
import { registerJobs } from "./jobs.js";
import { registerLs } from "./ls.js";
import { registerProjects } from "./projects.js";
import { registerPush } from "./push.js";
import { registerRun } from "./run.js";
import { registerServe } from "./serve.js";
import { registerSync } from "./sync.js";

const program = new Command()
  .name("ckpt")
  .description("Training checkpoints: serve the Baseten-compatible API, push, list and download checkpoints.")
  .showHelpAfterError()
  .exitOverride();

registerServe(program);
registerAdmin(program);
registerPush(program);
registerProjects(program);
registerJobs(program);
registerCheckpoints(program);
registerLs(program);
registerDownload(program);
registerRun(program);
registerSync(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  process.stderr.write(`ckpt: ${describeError(err)}\n`);
  process.exit(err instanceof CliError ? err.exitCode : 1);
}
