import { readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../package-root.js";

export type Register = (program: import("commander").Command) => void;

export interface CommandEntry {
  /** The name and its arguments, as the top-level help shows them. */
  spec: string;
  summary: string;
  load: () => Promise<Register>;
}

/**
 * Every command, in the order help lists them. A command's module (and what it imports: the SDK,
 * the download engine, the server side) is loaded only when that command runs; `ckpt --help`
 * lists them from this table without loading any. A new command is one entry here, its module
 * `./NAME.js` (scripts/bundle-cli.mjs bundles each command from it, and fails the build otherwise).
 */
export const COMMANDS: CommandEntry[] = [
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

export const nameOf = (entry: CommandEntry): string => entry.spec.split(" ")[0]!;

/** The command the arguments run (`ckpt X …`, `ckpt help X`), or null for top-level help and typos. */
export function commandNamed(argv: string[]): CommandEntry | null {
  const [first, second] = argv;
  const name = first === "help" ? second : first;
  return COMMANDS.find((entry) => nameOf(entry) === name) ?? null;
}

export const DESCRIPTION = "Training checkpoints: serve the Baseten-compatible API, push, list and download checkpoints.";

/** What `ckpt --help` prints: the layout of commander's help (80 columns), from the table. */
export function topLevelHelp(): string {
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

/** ckpt's version, from its package.json. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string }).version;
}
