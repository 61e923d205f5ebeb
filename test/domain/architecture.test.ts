/**
 * The import graph runs one way: cli -> client/server -> domain -> stores (README "Layout",
 * GUIDE "Architecture"). Read from the sources' import statements (TypeScript's own pre-parser,
 * so multi-line, type-only, re-exports and dynamic `import()` all count). Every exception is
 * listed below with its reason; a new one has to be added here, on purpose.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

// Compiled to dist/test/domain/: the sources are three levels up.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const SRC = join(ROOT, "src");

/** The composition root: the only server modules that may build concrete stores. */
const SERVER_COMPOSITION_ROOT = ["server/runtime.ts"];
/** The CLI's composition root: the only CLI modules that may load server modules (and through them the stores). */
const CLI_COMPOSITION_ROOT = ["cli/serve.ts", "cli/server-runtime.ts"];

/** Domain modules the SDK (src/client) may import: dependency-free rules it shares with the server. */
const CLIENT_MAY_IMPORT_FROM_DOMAIN: Record<string, string> = {
  "domain/checkpoint-id.ts": "which checkpoint a file belongs to: the SDK groups files exactly as the server does",
  "domain/checkpoint-markers.ts": "which files complete a checkpoint: `ckpt sync` holds them back by the server's rule",
  "domain/name-rules.ts": "which file names and node ranks are valid: a download refuses what the server would refuse",
  "domain/digests.ts": "the SHA-256 format: the SDK reads announced digests by the server's rule",
};

/** Store interfaces: the only store modules the domain may import. */
const STORE_INTERFACES = ["stores/blobs/store.ts", "stores/metadata/store.ts"];

/** Server modules other than the composition root that import a store module, and why. */
const SERVER_STORE_EXCEPTIONS: Record<string, { imports: string[]; reason: string }> = {
  "server/metrics.ts": {
    imports: STORE_INTERFACES,
    reason: "wraps the two store interfaces (types only) to time every call; only the composition root calls it",
  },
};

/**
 * Domain modules the stores import: record types and pure rules the stores persist by. Never the
 * service. domain/logs.ts is here for its LogQuery/NewLogLine types (it names CkptService in a
 * type only); moving those types to domain/types.ts would drop it.
 */
const STORES_MAY_IMPORT_FROM_DOMAIN: Record<string, string> = {
  "domain/types.ts": "the records the metadata stores read and write",
  "domain/ids.ts": "new ids for rows (and temporary names)",
  "domain/names.ts": "blob keys and name rules the stores index by",
  "domain/checkpoint-id.ts": "checkpoint ids derived from file names, stored with each file",
  "domain/checkpoint-markers.ts": "which files are checkpoint markers, stored with each file",
  "domain/checkpoints.ts": "checkpoint states the stores keep",
  "domain/retention.ts": "retention policies the stores keep",
  "domain/file-facts.ts": "file facts stored with each file",
  "domain/logs.ts": "log line and query types (see above)",
};

/** Concrete store classes: named only in src/stores and the composition roots. */
const CONCRETE_STORES = ["LocalBlobStore", "S3BlobStore", "SqliteMetadataStore", "PostgresMetadataStore"];

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

interface Module {
  /** Relative to src/, e.g. "server/app.ts". */
  name: string;
  text: string;
  /** Modules of src/ it imports, by name. */
  imports: string[];
}

function readModules(): Module[] {
  return sourceFiles(SRC).map((path) => {
    const text = readFileSync(path, "utf8");
    const imports = ts
      .preProcessFile(text, true, true)
      .importedFiles.map((f) => f.fileName)
      .filter((spec) => spec.startsWith("."))
      .map((spec) => relative(SRC, resolve(dirname(path), spec)).replace(/\.js$/, ".ts"));
    return { name: relative(SRC, path), text, imports };
  });
}

const layerOf = (name: string): string => (name.includes("/") ? name.slice(0, name.indexOf("/")) : name.replace(/\.ts$/, ""));

/** Every import that breaks a rule, as "from -> to: rule". */
export function violations(modules: Module[]): string[] {
  const found: string[] = [];
  const flag = (from: string, to: string, rule: string) => found.push(`${from} -> ${to}: ${rule}`);
  for (const m of modules) {
    const layer = layerOf(m.name);
    for (const to of m.imports) {
      const target = layerOf(to);
      if (layer === "cli") {
        if (target === "stores") flag(m.name, to, "the CLI reaches stores only through the domain (or the composition root's runtime)");
        if (target === "server" && !CLI_COMPOSITION_ROOT.includes(m.name))
          flag(m.name, to, `only the CLI's composition root (${CLI_COMPOSITION_ROOT.join(", ")}) loads server modules`);
      } else if (layer === "client") {
        if (target === "server" || target === "stores" || target === "cli" || target === "config") flag(m.name, to, "the SDK stands alone: no server, stores, CLI or server config");
        if (target === "domain" && !(to in CLIENT_MAY_IMPORT_FROM_DOMAIN)) flag(m.name, to, "the SDK imports only the listed dependency-free domain rules");
      } else if (layer === "server") {
        if (target === "cli" || target === "client") flag(m.name, to, "the server never imports the CLI or the SDK");
        if (target === "stores" && !SERVER_COMPOSITION_ROOT.includes(m.name) && !SERVER_STORE_EXCEPTIONS[m.name]?.imports.includes(to))
          flag(m.name, to, "server modules reach stores through the domain; only the composition root builds them");
      } else if (layer === "domain") {
        if (["cli", "client", "server", "config"].includes(target)) flag(m.name, to, "the domain imports no outer layer");
        if (target === "stores" && !STORE_INTERFACES.includes(to)) flag(m.name, to, "the domain sees stores only through their interfaces (src/stores/*/store.ts)");
      } else if (layer === "stores") {
        if (["cli", "client", "server"].includes(target)) flag(m.name, to, "stores import no outer layer");
        if (target === "domain" && !(to in STORES_MAY_IMPORT_FROM_DOMAIN)) flag(m.name, to, "stores import only the listed domain types and rules");
      } else if (layer === "formats") {
        if (target !== "formats") flag(m.name, to, "file formats are dependency-free");
      }
    }
  }
  // The SDK's domain rules must really be dependency-free, or the SDK would pull more in through them.
  for (const m of modules)
    if (m.name in CLIENT_MAY_IMPORT_FROM_DOMAIN)
      for (const to of m.imports) if (!(to in CLIENT_MAY_IMPORT_FROM_DOMAIN)) flag(m.name, to, "a domain rule the SDK imports must import only other such rules");
  return found;
}

/** Every use of a concrete store class (instanceof, a cast) outside src/stores and the composition roots. */
export function concreteStoreUses(modules: Module[]): string[] {
  const allowed = new Set([...SERVER_COMPOSITION_ROOT, ...CLI_COMPOSITION_ROOT]);
  const pattern = new RegExp(`\\b(instanceof|as)\\s+(${CONCRETE_STORES.join("|")})\\b`, "g");
  const found: string[] = [];
  for (const m of modules) {
    if (layerOf(m.name) === "stores" || allowed.has(m.name)) continue;
    for (const match of m.text.matchAll(pattern)) found.push(`${m.name}: ${match[0]}`);
    // Branching on which backend it is belongs to the store's capabilities, not to the caller.
    for (const match of m.text.matchAll(/\bblobs\.kind\b/g)) found.push(`${m.name}: ${match[0]}`);
  }
  return found;
}

const modules = readModules();

test("the sources were found (the test reads the tree it was built from)", () => {
  assert.ok(modules.length > 50, `only ${modules.length} modules under ${SRC}`);
  assert.ok(modules.some((m) => m.name === "server/runtime.ts"));
});

test("the import graph runs one way: cli -> client/server -> domain -> stores", () => {
  assert.deepEqual(violations(modules), []);
});

test("no instanceof of (or cast to) a concrete store outside src/stores and the composition roots", () => {
  assert.deepEqual(concreteStoreUses(modules), []);
});

test("the listed exceptions still exist (a stale one would hide a new violation)", () => {
  const names = new Set(modules.map((m) => m.name));
  for (const name of [...SERVER_COMPOSITION_ROOT, ...CLI_COMPOSITION_ROOT, ...STORE_INTERFACES, ...Object.keys(CLIENT_MAY_IMPORT_FROM_DOMAIN), ...Object.keys(SERVER_STORE_EXCEPTIONS), ...Object.keys(STORES_MAY_IMPORT_FROM_DOMAIN)])
    assert.ok(names.has(name), `${name} is listed but does not exist`);
  for (const [name, exception] of Object.entries(SERVER_STORE_EXCEPTIONS)) {
    const m = modules.find((x) => x.name === name)!;
    assert.ok(exception.imports.some((to) => m.imports.includes(to)), `${name} no longer needs its exception (${exception.reason})`);
  }
});

test("the rules catch what they are about (a graph that breaks each one)", () => {
  const fake = (name: string, imports: string[], text = ""): Module => ({ name, imports, text });
  const broken = [
    fake("cli/admin-import.ts", ["stores/blobs/s3/blob-store.ts"], "const store = service.blobs as S3BlobStore;"),
    fake("cli/push.ts", ["server/app.ts"]),
    fake("client/upload.ts", ["domain/service.ts"]),
    fake("server/routes/blobs.ts", ["stores/blobs/local.ts"], "if (!(service.blobs instanceof LocalBlobStore)) return;"),
    fake("server/routes/uploads.ts", [], `parts_via_api_server: service.blobs.kind === "local"`),
    fake("domain/service.ts", ["stores/metadata/sqlite.ts", "server/app.ts"]),
    fake("stores/blobs/local.ts", ["server/blob-urls.ts", "domain/service.ts"]),
  ];
  assert.equal(violations(broken).length, 8, violations(broken).join("\n"));
  assert.equal(concreteStoreUses(broken).length, 3, concreteStoreUses(broken).join("\n"));
});
