import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import nodeModule, { createRequire } from "node:module";
import { homedir, hostname } from "node:os";
import { basename, dirname, isAbsolute, join } from "node:path";
import { Script } from "node:vm";

/**
 * Loads one of the bundle's CommonJS command files (scripts/bundle-cli.mjs) and returns its
 * exports. On Node 22.1+ Node's own compile cache, enabled by the launcher, keeps the compiled
 * code between runs and this is a plain require. Node 20 has no such cache, and compiling the
 * command file is the largest part of a short command's start-up there (BENCHMARKS.md,
 * start-up), so there the file is compiled through vm.Script with V8's code cache, kept per user
 * under $XDG_CACHE_HOME/ckpt (~/.cache/ckpt) and written after a run that had none, so that it
 * holds the functions that run compiled. `contentId` names the file's content (the build's
 * digest of it); without one nothing is cached. A cache V8 refuses (another V8, other flags) is
 * rewritten; one that cannot be read or written costs only itself. NODE_DISABLE_COMPILE_CACHE=1
 * turns it off, as it does Node's.
 */
export function loadCommandFile(file: string, contentId: string | undefined): unknown {
  const require = createRequire(file);
  const nodeCachesCode = typeof (nodeModule as { enableCompileCache?: unknown }).enableCompileCache === "function";
  const cacheDir = nodeCachesCode || contentId === undefined ? null : codeCacheDir();
  if (cacheDir === null) return require(file);

  // V8 checks a cache against the source's length only, so the name carries the content's id
  // (from the build); the install's folder keeps two installs from pruning each other's caches.
  const prefix = `${basename(file)}-${fnv1a(dirname(file))}-${process.version}-`;
  const cacheFile = join(cacheDir, `${prefix}${contentId}.v8`);
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  // No importModuleDynamically: the bundle has no import() (scripts/bundle-cli.mjs checks).
  const script = new Script(nodeModule.wrap(readFileSync(file, "utf8")), { filename: file, cachedData });
  if (cachedData === undefined || script.cachedDataRejected) process.once("exit", () => writeCodeCache(cacheDir, prefix, cacheFile, script));

  const module = new nodeModule(file);
  module.filename = file;
  require.cache[file] = module;
  (script.runInThisContext() as (...args: unknown[]) => void).call(module.exports, module.exports, require, module, file, dirname(file));
  module.loaded = true;
  return module.exports;
}

/** The user's cache folder, created private; null when it cannot be, or when it is not theirs alone. */
function codeCacheDir(): string | null {
  if (process.env.NODE_DISABLE_COMPILE_CACHE === "1") return null;
  // The XDG rule: an empty or relative XDG_CACHE_HOME is ignored; so is a HOME that is not absolute
  // (the cache would land in the current folder, perhaps one about to be pushed).
  const xdg = process.env.XDG_CACHE_HOME;
  const home = homedir();
  const base = xdg && isAbsolute(xdg) ? xdg : isAbsolute(home) ? join(home, ".cache") : null;
  if (base === null) return null;
  try {
    const ours = join(base, "ckpt");
    const dir = join(ours, "compile-cache");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Code from the cache runs as this user: folders someone else owns or can write, or that are
    // links to elsewhere, are not used.
    for (const folder of [ours, dir]) {
      const stat = lstatSync(folder);
      if (!stat.isDirectory() || stat.uid !== process.getuid?.() || (stat.mode & 0o022) !== 0) return null;
    }
    return dir;
  } catch {
    return null;
  }
}

/** A short, stable name for a string (FNV-1a, 32 bits): not a security measure, a label. */
function fnv1a(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return hash.toString(36);
}

/** Writes the cache whole under a temporary name, then renames it (processes may race); older versions of it go. */
function writeCodeCache(dir: string, prefix: string, cacheFile: string, script: Script): void {
  try {
    const partial = `${cacheFile}.${hostname()}.${process.pid}.${Math.random().toString(36).slice(2)}.partial`;
    writeFileSync(partial, script.createCachedData(), { mode: 0o600 });
    renameSync(partial, cacheFile);
    for (const name of readdirSync(dir)) if (name.startsWith(prefix) && join(dir, name) !== cacheFile && !name.endsWith(".partial")) rmSync(join(dir, name), { force: true });
  } catch {
    // A read-only or full disk: the next run compiles without a cache, as this one did.
  }
}
