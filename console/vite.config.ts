import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The console is served by `ckpt serve` at /console/ under a CSP without 'unsafe-inline': the
// build must emit only external scripts and stylesheets (no inlined module-preload polyfill).
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/console/",
  publicDir: false,
  build: {
    outDir: fileURLToPath(new URL("../dist/console", import.meta.url)),
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    target: "es2022",
  },
  logLevel: "warn",
});
