#!/usr/bin/env node
// Bundles the compiled CLI (dist/src, from tsc) into dist/cli, which is what `ckpt` runs:
//
//   dist/cli/ckpt.cjs               the launcher: --version and top-level help from the command
//                                   table, then the one file of the command named
//   dist/cli/commands/<name>.cjs    one file per command: the runner, commander and every module
//                                   of ckpt the command uses; packages other than commander stay
//                                   requires of node_modules
//   dist/cli/commands/help.cjs      the runner alone (help after a typo, `ckpt` with no command)
//   dist/cli/commands/hash-worker.js  the hashing thread the download engine starts
//
// Why: a command is then two files to load instead of its graph of modules plus commander's five,
// which is most of `ckpt ls`'s start-up on Node 20 and a part of it on 22+ (BENCHMARKS.md,
// start-up). CommonJS, loaded with require, because Node's ESM loader is a cost of its own there.
// Every command file holds its own copy of the modules it shares with others; only one command
// runs per process, so no module is ever loaded twice.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { rolldown } from "rolldown";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const compiled = join(root, "dist", "src");
const out = join(root, "dist", "cli");
const commandTable = join(compiled, "cli", "commands.js");

const { COMMANDS, nameOf } = await import(pathToFileURL(commandTable).href);
const names = COMMANDS.map(nameOf);

/** Packages (bar commander) and Node's own modules are loaded from where they are installed. */
const external = (id) => id.startsWith("node:") || (!id.startsWith(".") && !id.startsWith("/") && !id.startsWith("\0") && id !== "commander" && !id.startsWith("commander/"));

/**
 * The command table imports every command's module; in the file of command `keep` only its own is
 * bundled, the others are left as imports that file never runs (and none at all in the launcher).
 */
function onlyCommand(keep) {
  let kept = keep === null;
  return {
    name: "ckpt-only-command",
    resolveId(source, importer) {
      if (importer !== commandTable || !/^\.\/[a-z-]+\.js$/.test(source)) return null;
      if (source === `./${keep}.js`) {
        kept = true;
        return null;
      }
      return { id: source, external: true };
    },
    buildEnd() {
      if (!kept) this.error(`the command table has no module ./${keep}.js for the command ${keep}`);
    },
  };
}

/** A module that is `code`, for entries that exist only in this build. */
function virtualEntry(id, code) {
  return {
    name: "ckpt-virtual-entry",
    resolveId: (source) => (source === id ? id : null),
    load: (loaded) => (loaded === id ? code : null),
  };
}

/**
 * Commander requires child_process (and with it dgram, net's pipes, process wrappers) when it
 * loads, for running a command as a separate executable, which ckpt never does: in the bundle
 * commander gets a stand-in that loads child_process only if spawn is called.
 */
const commandersChildProcess = (source, importer) => source === "node:child_process" && /[\\/]node_modules[\\/]commander[\\/]/.test(importer ?? "");

function lazyChildProcessForCommander() {
  const id = "\0ckpt-lazy-child-process";
  return {
    name: "ckpt-lazy-child-process",
    resolveId: (source, importer) => (commandersChildProcess(source, importer) ? id : null),
    load: (loaded) =>
      loaded === id ? `export function spawn(...args) { return process.getBuiltinModule("node:child_process").spawn(...args); }` : null,
  };
}

async function bundle({ input, plugins = [], file, format = "cjs", define = {}, extraExternal = () => false }) {
  const build = await rolldown({
    input,
    platform: "node",
    external: (id, importer) => !commandersChildProcess(id, importer) && (external(id) || extraExternal(id)),
    plugins: [lazyChildProcessForCommander(), ...plugins],
    transform: { define },
    logLevel: "warn",
  });
  // A command file may be compiled through vm.Script (src/cli/command-file.ts, Node 20), where an
  // import() has no loader to go to: the dynamic imports of packages become requires, and no
  // import() may be left in code (commander's JSDoc mentions some, in comments).
  await build.write({ file, format, codeSplitting: false, sourcemap: false, dynamicImportInCjs: false });
  if (format === "cjs") {
    const left = readFileSync(file, "utf8").split("\n").filter((line) => /\bimport\(/.test(line) && !/^\s*(\*|\/\/)/.test(line));
    if (left.length > 0) throw new Error(`${file} keeps a dynamic import():\n${left.join("\n")}`);
  }
  await build.close();
}

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "commands"), { recursive: true });

const program = join(compiled, "cli", "program.js");
// The command files first: the launcher carries a digest of each (the name of its code cache on
// Node 20, src/cli/command-file.ts).
const commandFileIds = {};
for (const name of [...names, "help"]) {
  const id = `\0ckpt-command:${name}`;
  const file = join(out, "commands", `${name}.cjs`);
  await bundle({
    input: id,
    file,
    plugins: [virtualEntry(id, `export { runProgram } from ${JSON.stringify(program)};`), onlyCommand(name === "help" ? null : name)],
  });
  commandFileIds[name] = createHash("sha256").update(readFileSync(file)).digest("hex").slice(0, 16);
}
await bundle({
  input: join(compiled, "cli", "main.js"),
  file: join(out, "ckpt.cjs"),
  define: { CKPT_BUNDLED_COMMANDS: "true", CKPT_COMMAND_FILE_IDS: JSON.stringify(commandFileIds) },
  plugins: [onlyCommand(null)],
  // The compiled tree's runner, which the bundled launcher never imports.
  extraExternal: (id) => id === "./program.js",
});
// A worker thread's entry, started by URL (hash-pool.ts): an ES module, as in the compiled tree.
await bundle({ input: join(compiled, "client", "download", "hash-worker.js"), file: join(out, "commands", "hash-worker.js"), format: "esm" });
