import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, symlinkSync } from "node:fs";
import { builtinModules } from "node:module";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { COMMANDS, nameOf } from "../../src/cli/commands.js";
import { packageRoot } from "../../src/package-root.js";
import { tempDir } from "../client/support/fixtures.js";
import { spawnServer, type ServerProcess } from "../harness/server.js";

/**
 * The package as `npm pack` makes it (what `npm install -g ckpt-<version>.tgz` puts on a training
 * node): its file list, then the CLI, the server with its web console and the SDK run from the
 * unpacked tarball. Dependencies come from this checkout's node_modules (linked in), so nothing is
 * fetched; the build is the one `npm test` just made (--ignore-scripts: no rebuild).
 */
const root = packageRoot();
const work = tempDir("ckpt-package-");
const unpacked = join(work.path, "package");
let files: string[];
let server: ServerProcess | undefined;

before(() => {
  const [packed] = JSON.parse(
    execFileSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", work.path], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }),
  ) as { filename: string; files: { path: string }[] }[];
  files = packed!.files.map((f) => f.path);
  execFileSync("tar", ["xzf", join(work.path, packed!.filename), "-C", work.path]);
  symlinkSync(join(root, "node_modules"), join(unpacked, "node_modules"), "dir");
});

after(async () => {
  server?.child.kill("SIGKILL");
  await server?.exited;
  work.remove();
});

test("the tarball holds the built CLI, server, console and SDK, and none of the sources, tests or benchmarks", () => {
  const has = (path: string) => assert.ok(files.includes(path), `${path} is not in the package`);
  for (const path of ["package.json", "README.md", "dist/cli/ckpt.cjs", "dist/cli/commands/help.cjs", "dist/cli/commands/hash-worker.js", "dist/console/index.html", "dist/src/client/index.js", "dist/src/client/index.d.ts"])
    has(path);
  for (const command of COMMANDS.map(nameOf)) has(`dist/cli/commands/${command}.cjs`);
  const stray = files.filter((f) => /^(src|test|bench|console|scripts|docs|\.ci)\//.test(f) || /^dist\/(test|bench)\//.test(f) || f.startsWith("node_modules/"));
  assert.deepEqual(stray, []);
});

test("every package the bundled CLI loads at run time is a dependency (not a devDependency, which an install leaves out)", () => {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { dependencies: Record<string, string> };
  const cliDir = join(unpacked, "dist", "cli");
  const sources = [join(cliDir, "ckpt.cjs"), ...readdirSync(join(cliDir, "commands")).map((f) => join(cliDir, "commands", f))].map((f) => readFileSync(f, "utf8"));
  const loaded = new Set<string>();
  // require("x"), a createRequire(...)("x"), and the ES worker's imports.
  for (const source of sources)
    for (const m of source.matchAll(/(?:\brequire|\.href\))\("([^".][^"]*)"\)|\bfrom "([^".][^"]*)"/g)) {
      const specifier = (m[1] ?? m[2])!;
      if (specifier.startsWith("node:") || builtinModules.includes(specifier)) continue;
      loaded.add(specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!);
    }
  assert.ok(loaded.has("fastify") && loaded.has("picomatch"), `found: ${[...loaded].join(", ")}`);
  assert.deepEqual([...loaded].filter((name) => !(name in pkg.dependencies)), [], "loaded at run time but not in dependencies");
});

test("ckpt from the unpacked tarball answers --version and --help", () => {
  const cli = join(unpacked, "dist", "cli", "ckpt.cjs");
  const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  assert.equal(execFileSync(process.execPath, [cli, "--version"], { encoding: "utf8" }).trim(), version);
  assert.match(execFileSync(process.execPath, [cli, "ls", "--help"], { encoding: "utf8" }), /Usage: ckpt ls/);
});

test("ckpt serve from the unpacked tarball serves the API and the web console", async () => {
  const data = join(work.path, "data");
  server = await spawnServer(data, {}, join(unpacked, "dist", "cli", "ckpt.cjs"));
  assert.equal((await fetch(`${server.baseUrl}/healthz`)).status, 200);
  const page = await fetch(`${server.baseUrl}/console/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  const unauthorised = await fetch(`${server.baseUrl}/v1/training_projects`);
  assert.equal(unauthorised.status, 401);
});

test("the SDK imports from the unpacked tarball", () => {
  const sdk = join(unpacked, "dist", "src", "client", "index.js");
  const exported = execFileSync(process.execPath, ["--input-type=module", "-e", `const m = await import(${JSON.stringify(sdk)}); console.log(Object.keys(m).sort().join(","))`], { encoding: "utf8" });
  assert.match(exported, /CkptClient/);
});
