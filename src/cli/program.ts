import { Command, CommanderError } from "commander";
import { CliError, describeError } from "./common.js";
import { COMMANDS, DESCRIPTION, nameOf, packageVersion } from "./commands.js";
import { quietOption } from "./reporter.js";

/**
 * Parses the arguments and runs the command they name (`name`, already picked from them by the
 * caller), or, with none, answers help and typos from the table alone, loading no command module.
 */
export async function runProgram(name: string | null): Promise<void> {
  const entry = COMMANDS.find((known) => nameOf(known) === name) ?? null;
  const program = new Command()
    .name("ckpt")
    .version(packageVersion(), "-V, --version", "print ckpt's version")
    .description(DESCRIPTION)
    .showHelpAfterError()
    .exitOverride();
  try {
    // The AWS SDK's notice that its 2027 releases will need Node 22 is for whoever runs the server
    // (`ckpt serve` still prints it); on an admin command against S3 it is noise on stderr.
    if (entry && nameOf(entry) !== "serve") process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    if (entry) {
      (await entry.load())(program);
      acceptQuietEverywhere(program);
    } else for (const known of COMMANDS) program.command(known.spec).description(known.summary);
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode);
    process.stderr.write(`ckpt: ${describeError(err)}\n`);
    process.exit(err instanceof CliError ? err.exitCode : 1);
  }
}

/** `--quiet` on every command that runs something, with one meaning (see reporter.ts). */
function acceptQuietEverywhere(command: Command): void {
  for (const sub of command.commands) acceptQuietEverywhere(sub);
  if (command.commands.length === 0 && !command.options.some((o) => o.long === "--quiet")) command.addOption(quietOption());
}
