import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import nodeModule from "node:module";
import { join } from "node:path";
import { test } from "node:test";
import { tempDir } from "../client/support/fixtures.js";
import { runCli } from "../harness/server.js";

/**
 * The command file's code cache (src/cli/command-file.ts), through the real CLI: on Node 20 it
 * keeps V8's compiled code per user between runs; on Node 22.1+ Node's own compile cache does that
 * and ckpt writes nothing of its own.
 */
const nodeCachesCode = typeof (nodeModule as { enableCompileCache?: unknown }).enableCompileCache === "function";

function cliWithCache() {
  const home = tempDir("ckpt-code-cache-");
  const dir = join(home.path, "ckpt", "compile-cache");
  const run = (env: NodeJS.ProcessEnv = {}) => runCli(["ls", "--help"], { env: { XDG_CACHE_HOME: home.path, ...env } });
  const files = () => (existsSync(dir) ? readdirSync(dir).sort() : []);
  return { home, dir, run, files };
}

test("Node 20: the first run writes the command file's code cache, later runs use it unchanged", { skip: nodeCachesCode && "Node's own compile cache is used here" }, async () => {
  const { home, dir, run, files } = cliWithCache();
  try {
    const first = await run();
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^Usage: ckpt ls /);
    const [cache] = files();
    // The file, its install's folder, the Node version, the build's digest of the file's content.
    assert.match(cache ?? "", new RegExp(`^ls\\.cjs-[0-9a-z]+-${process.version.replaceAll(".", "\\.")}-[0-9a-f]{16}\\.v8$`));
    assert.equal(statSync(dir).mode & 0o777, 0o700, "the folder is the user's alone");
    const written = readFileSync(join(dir, cache!));
    assert.ok(written.length > 1000, `a cache of ${written.length} bytes`);
    const { ino, mtimeMs } = statSync(join(dir, cache!));

    const second = await run();
    assert.equal(second.stdout, first.stdout);
    assert.deepEqual(files(), [cache], "nothing new written");
    const after = statSync(join(dir, cache!));
    assert.deepEqual([after.ino, after.mtimeMs], [ino, mtimeMs], "V8 took the cache: it was not rewritten");
    assert.deepEqual(readFileSync(join(dir, cache!)), written);
  } finally {
    home.remove();
  }
});

test("Node 20: a corrupt cache is refused by V8 and rewritten; a stale one of an older build is removed", { skip: nodeCachesCode && "Node's own compile cache is used here" }, async () => {
  const { home, dir, run, files } = cliWithCache();
  try {
    const reference = await run();
    const [cache] = files();
    const garbage = randomBytes(4096);
    writeFileSync(join(dir, cache!), garbage);
    const stale = cache!.replace(/[0-9a-f]{16}\.v8$/, "0000000000000000.v8");
    writeFileSync(join(dir, stale), garbage);

    const corrupt = await run();
    assert.equal(corrupt.code, 0, corrupt.stderr);
    assert.equal(corrupt.stdout, reference.stdout);
    assert.deepEqual(files(), [cache], "the stale build's cache is gone");
    assert.notDeepEqual(readFileSync(join(dir, cache!)), garbage, "rewritten from the compiled code");
    const again = await run();
    assert.equal(again.stdout, reference.stdout);
  } finally {
    home.remove();
  }
});

test("no cache where another user could write it, without an absolute HOME, with NODE_DISABLE_COMPILE_CACHE=1, or of ckpt's own on Node 22+", async () => {
  const { home, dir, run, files } = cliWithCache();
  try {
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o777);
    const open = await run();
    assert.equal(open.code, 0, open.stderr);
    assert.match(open.stdout, /^Usage: ckpt ls /);
    assert.deepEqual(files(), [], "a world-writable folder is not used");

    chmodSync(dir, 0o700);
    const cwd = join(home.path, "work");
    mkdirSync(cwd);
    const relativeHome = await runCli(["ls", "--help"], { env: { HOME: "" }, cwd });
    assert.equal(relativeHome.code, 0, relativeHome.stderr);
    assert.deepEqual(readdirSync(cwd), [], "no cache in the current folder when HOME is empty");
    const disabled = await run({ NODE_DISABLE_COMPILE_CACHE: "1" });
    assert.equal(disabled.code, 0, disabled.stderr);
    assert.deepEqual(files(), []);

    const plain = await run();
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(files().length, nodeCachesCode ? 0 : 1);
  } finally {
    home.remove();
  }
});
