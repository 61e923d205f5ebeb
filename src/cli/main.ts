#!/usr/bin/env node
import { readFileSync } from "node:fs";
import nodeModule from "node:module";

// Before anything else is loaded (everything below is imported dynamically): on Node 22.1+ the
// compiled code of commander and our modules is cached on disk between runs. Node 20 has no
// such cache; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();

type Register = (program: import("commander").Command) => void;

interface CommandEntry {
  /** The name and its arguments, as the top-level help shows them. */
  spec: string;
  summary: string;
  load: () => Promise<Register>;
}

/**
 * Every command, in the order help lists them. A command's module (and what it imports: the SDK,
 * the download engine, the server side) is loaded only when that command runs; `ckpt --help`
 * lists them from this table without loading any. A new command is one entry here.
 */
const COMMANDS: CommandEntry[] = [
  { spec: "serve", summary: "run the API server (embedded default: SQLite + local disk under --data-dir)", load: async () => (await import("./serve.js")).registerServe },
  { spec: "admin", summary: "administer a ckpt data directory (runs locally, no server needed)", load: async () => (await import("./admin.js")).registerAdmin },
  { spec: "push <dir>", summary: "upload every file under DIR as checkpoint files of a job", load: async () => (await import("./push.js")).registerPush },
  { spec: "projects", summary: "list training projects, or create one", load: async () => (await import("./projects.js")).registerProjects },
  { spec: "jobs", summary: "list a project's training jobs, or create one", load: async () => (await import("./jobs.js")).registerJobs },
  { spec: "checkpoints", summary: "list a job's checkpoints (state, size, files, aliases, pins); complete, pin and unpin them", load: async () => (await import("./checkpoints.js")).registerCheckpoints },
  { spec: "ls", summary: "list a job's checkpoint files: rank, name, size, modified", load: async () => (await import("./ls.js")).registerLs },
  { spec: "download", summary: "download a job's checkpoint files (resumable, verified)", load: async () => (await import("./download.js")).registerDownload },
  { spec: "inspect", summary: "what a checkpoint holds (tensor names, dtypes, shapes, parameters) without downloading it", load: async () => (await import("./inspect.js")).registerInspect },
  { spec: "diff <a> <b>", summary: "compare two checkpoints: tensors and files added, removed or changed", load: async () => (await import("./diff.js")).registerDiff },
  { spec: "run <command...>", summary: "run a training command and upload its checkpoints as they are written", load: async () => (await import("./run.js")).registerRun },
  { spec: "sync <dir>", summary: "upload DIR's files as checkpoint files of a job, each once it is complete", load: async () => (await import("./sync.js")).registerSync },
  { spec: "verify <dir>", summary: "check a downloaded folder against the manifest ckpt download wrote (offline)", load: async () => (await import("./verify.js")).registerVerify },
  { spec: "alias", summary: "project-scoped names for checkpoints (@NAME wherever a checkpoint is taken)", load: async () => (await import("./alias.js")).registerAlias },
  { spec: "retention", summary: "which checkpoints a project keeps: set a policy, plan, apply", load: async () => (await import("./retention.js")).registerRetention },
];

const nameOf = (entry: CommandEntry): string => entry.spec.split(" ")[0]!;

/** The command the arguments run (`ckpt X …`, `ckpt help X`), or null for top-level help and typos. */
function commandNamed(argv: string[]): CommandEntry | null {
  const [first, second] = argv;
  const name = first === "help" ? second : first;
  return COMMANDS.find((entry) => nameOf(entry) === name) ?? null;
}

const DESCRIPTION = "Training checkpoints: serve the Baseten-compatible API, push, list and download checkpoints.";

// The two calls that need no parsing are answered before commander is loaded (a third of their
// start-up on Node 20): `ckpt --version` and the top-level help, laid out as commander does.
const onlyArgument = process.argv.length === 3 ? process.argv[2] : undefined;
if (onlyArgument === "--version" || onlyArgument === "-V") {
  process.stdout.write(packageVersion() + "\n");
  process.exit(0);
}
if (onlyArgument === "--help" || onlyArgument === "-h" || onlyArgument === "help") {
  process.stdout.write(topLevelHelp());
  process.exit(0);
}

const { Command, CommanderError } = await import("commander");
const program = new Command()
  .name("ckpt")
  .version(packageVersion(), "-V, --version", "print ckpt's version")
  .description(DESCRIPTION)
  .showHelpAfterError()
  .exitOverride();

try {
  const named = commandNamed(process.argv.slice(2));
  // The AWS SDK's notice that its 2027 releases will need Node 22 is for whoever runs the server
  // (`ckpt serve` still prints it); on an admin command against S3 it is noise on stderr.
  if (named && nameOf(named) !== "serve") process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  if (named) {
    (await named.load())(program);
    await acceptQuietEverywhere(program);
  }
  // Top-level help, --version, a typo: the table is enough, no command module is loaded.
  else for (const entry of COMMANDS) program.command(entry.spec).description(entry.summary);
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  const { CliError, describeError } = await import("./common.js");
  process.stderr.write(`ckpt: ${describeError(err)}\n`);
  process.exit(err instanceof CliError ? err.exitCode : 1);
}

/** `--quiet` on every command that runs something, with one meaning (see reporter.ts). */
async function acceptQuietEverywhere(command: import("commander").Command): Promise<void> {
  const { quietOption } = await import("./reporter.js");
  const visit = (cmd: import("commander").Command): void => {
    for (const sub of cmd.commands) visit(sub);
    if (cmd.commands.length === 0 && !cmd.options.some((o) => o.long === "--quiet")) cmd.addOption(quietOption());
  };
  visit(command);
}

/** What `ckpt --help` prints: the layout of commander's help (80 columns), from the table. */
function topLevelHelp(): string {
  const width = 80;
  const wrap = (text: string, indent: number): string => {
    const lines: string[] = [];
    let line = "";
    for (const word of text.split(" ")) {
      if (line && indent + line.length + 1 + word.length > width) lines.push(line), (line = word);
      else line = line ? `${line} ${word}` : word;
    }
    lines.push(line);
    return lines.join("\n" + " ".repeat(indent));
  };
  const rows: [string, string][] = [...COMMANDS.map((c): [string, string] => [c.spec, c.summary]), ["help [command]", "display help for command"]];
  const options: [string, string][] = [
    ["-V, --version", "print ckpt's version"],
    ["-h, --help", "display help for command"],
  ];
  const column = Math.max(...[...rows, ...options].map(([term]) => term.length)) + 4;
  const list = (items: [string, string][]) => items.map(([term, text]) => `  ${term.padEnd(column - 2)}${wrap(text, column)}\n`).join("");
  return `Usage: ckpt [options] [command]\n\n${wrap(DESCRIPTION, 0)}\n\nOptions:\n${list(options)}\nCommands:\n${list(rows)}`;
}

/** From package.json, which sits two folders above the compiled dist/src/cli/. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}
