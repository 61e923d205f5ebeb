#!/usr/bin/env node
import nodeModule from "node:module";
import { commandNamed, nameOf, packageVersion, topLevelHelp } from "./commands.js";

// Before commander and the command's modules load (they are imported dynamically below): on Node
// 22.1+ the compiled code is cached on disk between runs. Node 20 has no such cache;
// NODE_DISABLE_COMPILE_CACHE=1 turns it off.
(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();

/**
 * Set (to true) only in the bundled CLI that `npm run build` writes to dist/cli, which ships each
 * command as one file holding it, the runner and commander (scripts/bundle-cli.mjs); the compiled
 * tree (dist/src) loads the same modules one by one.
 */
declare const CKPT_BUNDLED_COMMANDS: boolean | undefined;

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
const runner: typeof import("./program.js") =
  typeof CKPT_BUNDLED_COMMANDS === "boolean" ? await import(`./commands/${name ?? "help"}.js`) : await import("./program.js");
await runner.runProgram(name);
