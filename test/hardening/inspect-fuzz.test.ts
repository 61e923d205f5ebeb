import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { startTestServer, type TestServer } from "../harness/server.js";
import { setupJob } from "../helpers/api.js";
import { rawSafetensors, safetensorsFile } from "../helpers/safetensors.js";

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

/**
 * Whatever a safetensors file's header holds, its upload is committed (201), and the checkpoints
 * listing and the tensors route answer 200: never a 5xx, never a hang.
 */
test("fuzz: hostile safetensors headers through the server (fast-check): 0 5xx", async () => {
  const job = await setupJob(server, "inspect-fuzz");
  const header = fc.oneof(
    fc.json().map((json) => rawSafetensors(json, json.length % 13)),
    fc.dictionary(fc.string({ maxLength: 6 }), fc.record({ dtype: fc.constantFrom("F32", "F4", "BF16", "F8_E8M0", "??"), shape: fc.array(fc.nat(9), { maxLength: 3 }), data_offsets: fc.array(fc.nat(64), { minLength: 2, maxLength: 2 }) })).map((entries) => rawSafetensors(JSON.stringify(entries), 32)),
    fc.tuple(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.uint8Array({ maxLength: 64 })).map(([n, rest]) => rawSafetensors(Buffer.from(rest).toString("latin1"), 0, n)),
    fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
    fc.nat(200).map((n) => safetensorsFile([{ name: "w", dtype: "F32", shape: [n] }]).subarray(0, 8 + n)),
  );
  let i = 0;
  await fc.assert(
    fc.asyncProperty(header, async (bytes) => {
      const name = `fuzz/f-${i++}.safetensors`;
      const put = await job.upload(0, name, bytes);
      assert.equal(put.status, 201, JSON.stringify(put.body));
      const tensors = await job.client.get(`${job.jobPath}/checkpoints/fuzz/tensors?file=${encodeURIComponent(name)}`);
      assert.equal(tensors.status, 200, JSON.stringify(tensors.body));
      const [file] = tensors.body.files;
      assert.ok(file.error === null || (typeof file.error === "string" && file.error.length > 0));
    }),
    { numRuns: 60 * Number(process.env.CKPT_FUZZ_RUNS ?? 1) },
  );
  assert.equal((await job.client.get(`${job.jobPath}/checkpoints`)).status, 200);
  assert.equal((await job.client.get(`${job.jobPath}/checkpoints/fuzz/tensors`)).status, 200);
});
