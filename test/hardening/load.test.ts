import { test } from "node:test";
import assert from "node:assert/strict";
import { runLoad } from "../../bench/load.js";
import { startStores } from "../harness/stores.js";

/**
 * The load script in CI size: a few seconds of concurrent listing, downloads and uploads
 * against `ckpt serve` on the backend under test. It asserts correctness under load (every
 * request answered as expected), never speed: the figures depend on the machine.
 */
test("a few seconds of concurrent list, download and upload traffic: zero errors", { timeout: 120_000 }, async (t) => {
  const stores = await startStores();
  t.after(() => stores.stop());
  const result = await runLoad({ seconds: 3, clients: 8, seedFiles: 50, fileBytes: 64 * 1024, stores });
  for (const op of ["list", "download", "upload"] as const) {
    assert.ok(result.operations[op].requests > 0, `${op} requests were made`);
    assert.equal(result.operations[op].errors, 0, `${op} errors: ${result.errorSamples.join("; ")}`);
  }
});
