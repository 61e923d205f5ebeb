#!/usr/bin/env node
import nodeModule from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadCommandFile } from "./command-file.js";
import { commandNamed, nameOf, packageVersion, topLevelHelp } from "./commands.js";

// Before commander and the command's modules load (below): on Node 22.1+ the compiled code is
// cached on disk between runs. Node 20 has no such cache, so there loadCommandFile keeps one of
// its own. NODE_DISABLE_COMPILE_CACHE=1 turns either off.
(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();

/**
 * Set (to true) only in the bundled CLI that `npm run build` writes to dist/cli, which ships each
 * command as one CommonJS file holding it, the runner and commander (scripts/bundle-cli.mjs); the
 * compiled tree (dist/src) loads the same modules one by one, as ES modules.
 */
declare const CKPT_BUNDLED_COMMANDS: boolean | undefined;
/** In the bundled CLI: each command file's content digest (for its code cache, command-file.ts). */
declare const CKPT_COMMAND_FILE_IDS: Record<string, string> | undefined;

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

const named = commandNamed(process.argv.slice(2));
const name = named ? nameOf(named) : null;
const commandFile = name ?? "help";
// The bundle's command files are CommonJS, loaded with require: Node's ESM loader is then never
// started (on Node 20 a measurable part of a `ckpt ls`: BENCHMARKS.md, start-up). No top-level
// await here, so that the launcher bundles as CommonJS too.
const runner: Promise<typeof import("./program.js")> =
  typeof CKPT_BUNDLED_COMMANDS === "boolean"
    ? Promise.resolve(
        loadCommandFile(join(dirname(fileURLToPath(import.meta.url)), "commands", `${commandFile}.cjs`), CKPT_COMMAND_FILE_IDS?.[commandFile]) as typeof import("./program.js"),
      )
    : import("./program.js");
void runner.then((loaded) => loaded.runProgram(name));
