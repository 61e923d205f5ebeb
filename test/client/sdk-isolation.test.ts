import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const clientEntry = resolve(here, "..", "..", "src", "client", "index.js");
const clientRoot = dirname(clientEntry);
/** Dependency-free file-format parsers the SDK shares with the server (no I/O, no server code). */
const formatsRoot = resolve(clientRoot, "..", "formats");
/** Packages the SDK may load: nothing of the server (no fastify, SQLite, pg, AWS SDK), no undici (the transfer layer is node:http). */
const ALLOWED_PACKAGES = new Set(["picomatch"]);
/**
 * Domain rules the SDK shares with the server so each has one home (which checkpoint a file
 * belongs to, which files complete one, file names and node ranks, the SHA-256 format). They import nothing but each other.
 */
const SHARED_DOMAIN_MODULES = new Set(["checkpoint-id.js", "checkpoint-markers.js", "name-rules.js", "digests.js"].map((f) => resolve(clientRoot, "..", "domain", f)));

/** Every module reachable from the SDK entry point, following the compiled import statements. */
function importGraph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string): void => {
    if (files.has(file)) return;
    files.add(file);
    const source = readFileSync(file, "utf8");
    for (const [, specifier] of source.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g)) {
      if (!specifier) continue;
      if (specifier.startsWith(".")) visit(resolve(dirname(file), specifier));
      else if (!specifier.startsWith("node:")) packages.add(specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!);
    }
  };
  visit(entry);
  return { files, packages };
}

test("the SDK loads nothing outside src/client and no server dependency", () => {
  const { files, packages } = importGraph(clientEntry);
  const outside = [...files].filter(
    (f) => relative(clientRoot, f).startsWith("..") && relative(formatsRoot, f).startsWith("..") && !SHARED_DOMAIN_MODULES.has(f),
  );
  assert.deepEqual(outside, [], "modules outside src/client (and src/formats, the shared domain rules) reachable from the SDK");
  assert.deepEqual([...packages].filter((p) => !ALLOWED_PACKAGES.has(p)), []);
  assert.ok(files.has(join(clientRoot, "download", "download-checkpoint.js")), "the graph walk should reach the download engine");
});

test("the domain modules the SDK shares import nothing else", () => {
  for (const module of SHARED_DOMAIN_MODULES) {
    const { files, packages } = importGraph(module);
    assert.deepEqual([...files].filter((f) => !SHARED_DOMAIN_MODULES.has(f)), [], `${module} reaches further`);
    assert.deepEqual([...packages], []);
  }
});
