#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { registerAdmin } from "./admin.js";
import { CliError, describeError } from "./common.js";
import { registerPush } from "./push.js";
import { registerServe } from "./serve.js";

const program = new Command()
  .name("ckpt")
  .description("Training checkpoints: serve the Baseten-compatible API, push, list and download checkpoints.")
  .showHelpAfterError()
  .exitOverride();

registerServe(program);
registerAdmin(program);
registerPush(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  process.stderr.write(`ckpt: ${describeError(err)}\n`);
  process.exit(err instanceof CliError ? err.exitCode : 1);
}
