/**
 * A ckpt server for the listing-throughput scenario: exactly what `ckpt serve` builds (the same
 * runtime, app and routes; no request logging, as in the bench's `ckpt serve --log-level warn`),
 * with one switch only this benchmark uses: `--no-sign` swaps the blob store for one whose
 * presignGet returns a constant string as long as a real URL. The anchor server therefore
 * answers the same JSON, of the same size, minus the cost of signing.
 *
 *   node dist/bench/listing-server.js --port P --data-dir D [--no-sign]
 */
import { parseArgs } from "node:util";
import { loadServerConfig } from "../src/config.js";
import { CkptService } from "../src/domain/service.js";
import { buildApp } from "../src/server/app.js";
import { openRuntime } from "../src/server/runtime.js";
import type { BlobStore } from "../src/stores/blobs/store.js";

/**
 * `inner` in every respect (a Proxy, so it follows the BlobStore interface as it grows) except
 * presignGet, which does no work at all.
 */
export function unsignedBlobStore(inner: BlobStore): BlobStore {
  let constant: string | null = null;
  const presignGet: BlobStore["presignGet"] = (key, expiresInSeconds, now) => {
    // Measured once: every name in the bench job is as long as every other.
    constant ??= "x".repeat(inner.presignGet(key, expiresInSeconds, now).length);
    return constant;
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === "presignGet") return presignGet;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

const { values } = parseArgs({
  options: { port: { type: "string" }, "data-dir": { type: "string" }, "no-sign": { type: "boolean", default: false } },
});
const config = loadServerConfig({ port: values.port, dataDir: values["data-dir"], host: "127.0.0.1", logLevel: "warn" });
const runtime = await openRuntime(config);
const service = values["no-sign"]
  ? new CkptService(runtime.service.metadata, unsignedBlobStore(runtime.service.blobs), runtime.service.limits)
  : runtime.service;
const app = await buildApp({ service, signer: runtime.signer, servedBlobs: runtime.servedBlobs, jsonBodyLimit: config.jsonBodyLimit });
await app.listen({ host: config.host, port: config.port });
const stop = async () => {
  await app.close();
  await runtime.close();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
