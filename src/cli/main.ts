#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { CliError, describeError } from "./common.js";

type Register = (program: Command) => void;

/**
 * Every command, in the order help lists them, each loaded only when it is needed: the server
 * side (serve, admin) pulls in Fastify, SQLite, PostgreSQL and the AWS SDK, about a second of
 * start-up that `ckpt ls` or `ckpt download` should not pay. A new command is one line here.
 */
const COMMANDS: [name: string, load: () => Promise<Register>][] = [
  ["serve", async () => (await import("./serve.js")).registerServe],
  ["admin", async () => (await import("./admin.js")).registerAdmin],
  ["push", async () => (await import("./push.js")).registerPush],
  ["projects", async () => (await import("./projects.js")).registerProjects],
  ["jobs", async () => (await import("./jobs.js")).registerJobs],
  ["checkpoints", async () => (await import("./checkpoints.js")).registerCheckpoints],
  ["ls", async () => (await import("./ls.js")).registerLs],
  ["download", async () => (await import("./download.js")).registerDownload],
  ["inspect", async () => (await import("./inspect.js")).registerInspect],
  ["diff", async () => (await import("./diff.js")).registerDiff],
  ["run", async () => (await import("./run.js")).registerRun],
  ["sync", async () => (await import("./sync.js")).registerSync],
  ["verify", async () => (await import("./verify.js")).registerVerify],
  ["alias", async () => (await import("./alias.js")).registerAlias],
  ["retention", async () => (await import("./retention.js")).registerRetention],
];

const program = new Command()
  .name("ckpt")
  .version(packageVersion(), "-V, --version", "print ckpt's version")
  .description("Training checkpoints: serve the Baseten-compatible API, push, list and download checkpoints.")
  .showHelpAfterError()
  .exitOverride();

try {
  // The command named on the command line; for anything else (help, a typo) all of them.
  const named = COMMANDS.find(([name]) => name === process.argv[2]);
  for (const [, load] of named ? [named] : COMMANDS) (await load())(program);
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  process.stderr.write(`ckpt: ${describeError(err)}\n`);
  process.exit(err instanceof CliError ? err.exitCode : 1);
}

/** From package.json, which sits two folders above the compiled dist/src/cli/. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}
