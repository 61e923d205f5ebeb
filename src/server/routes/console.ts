import { readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyPluginAsync } from "fastify";
import { ApiError } from "../../domain/errors.js";
import { packageRoot } from "../../package-root.js";

/**
 * The web console: the static files Vite built from console/ (dist/console), served at
 * /console/. Any path under /console/ that is not an asset is the single page itself, so every
 * page's URL can be opened directly. Its CSP replaces the API's `default-src 'none'` for these
 * responses only: scripts, styles and requests from this origin alone, nothing inline, no eval,
 * no framing. No authentication: the files hold no data; the page asks the API with the key.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join("; ");

const DEFAULT_CONSOLE_DIR = join(packageRoot(), "dist", "console");

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".json": "application/json",
};

interface Asset {
  body: Buffer;
  contentType: string;
}

/** The built files, read once at start-up (a few tens of KiB); null when the console was not built. */
function loadAssets(dir: string): Map<string, Asset> | null {
  const assets = new Map<string, Asset>();
  const walk = (folder: string): void => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile())
        assets.set(relative(dir, path).split(sep).join("/"), { body: readFileSync(path), contentType: CONTENT_TYPES[extname(path)] ?? "application/octet-stream" });
    }
  };
  try {
    if (!statSync(dir).isDirectory()) return null;
    walk(dir);
  } catch {
    return null;
  }
  return assets.has("index.html") ? assets : null;
}

export const consoleRoutes: FastifyPluginAsync<{ dir?: string }> = async (app, options) => {
  const assets = loadAssets(options.dir ?? DEFAULT_CONSOLE_DIR);

  // Runs after the root scope's security headers (parent hooks first), so it overrides their CSP.
  app.addHook("onSend", async (_request, reply, payload) => {
    if (String(reply.getHeader("content-type") ?? "").startsWith("text/html")) reply.header("content-security-policy", CONSOLE_CSP);
    return payload;
  });

  app.get("/console", { schema: { hide: true } }, async (_request, reply) => reply.redirect("/console/", 308));

  app.get("/console/*", { schema: { hide: true } }, async (request, reply) => {
    if (assets === null) throw new ApiError(404, "CONSOLE_NOT_BUILT", "the web console was not built: run `npm run build`");
    const path = (request.params as { "*": string })["*"];
    const asset = assets.get(path);
    if (asset && path !== "index.html") {
      // Vite names assets by content hash: a name never changes meaning.
      const immutable = path.startsWith("assets/");
      return reply
        .header("content-type", asset.contentType)
        .header("cache-control", immutable ? "public, max-age=31536000, immutable" : "no-cache")
        .send(asset.body);
    }
    if (path.startsWith("assets/")) throw new ApiError(404, "NOT_FOUND", "no such console asset");
    return reply.header("content-type", CONTENT_TYPES[".html"]!).header("cache-control", "no-cache").send(assets.get("index.html")!.body);
  });
};
