import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { FIRST_READ_BYTES, inspectCheckpoint } from "../../src/client/inspect-checkpoint.js";
import { runCli, startTestServer, type TestServer } from "../harness/server.js";
import { seedJob, type SeededJob } from "../client/support/fixtures.js";
import { startProxy } from "../client/support/http-proxy.js";
import { safetensorsFile } from "../helpers/safetensors.js";

let server: TestServer;
let seeded: SeededJob;
/** Enough tensors with long names that shard 1's header is larger than the first Range read. */
const MANY = Array.from({ length: 2500 }, (_, i) => ({ name: `model.layers.${i}.mlp.gate_proj.${"w".repeat(90)}`, dtype: "BF16", shape: [2, 2] }));

function checkpoint(step: number, changed: boolean) {
  const shard1 = safetensorsFile([{ name: "embed", dtype: "BF16", shape: [32, 8] }, ...MANY], { format: "pt" });
  const shard2 = safetensorsFile([
    { name: "lm_head", dtype: "BF16", shape: changed ? [32, 16] : [32, 8] },
    { name: "norm", dtype: changed ? "F32" : "BF16", shape: [8] },
    changed ? { name: "new.bias", dtype: "F32", shape: [8] } : { name: "old.w", dtype: "F32", shape: [4] },
  ]);
  const weightMap: Record<string, string> = { embed: "model-1.safetensors", lm_head: "model-2.safetensors", norm: "model-2.safetensors", gone: "model-2.safetensors" };
  for (const t of MANY) weightMap[t.name] = "model-1.safetensors";
  return [
    { rank: 0, name: `checkpoint-${step}/model-1.safetensors`, content: shard1 },
    { rank: 0, name: `checkpoint-${step}/model-2.safetensors`, content: shard2 },
    { rank: 0, name: `checkpoint-${step}/model.safetensors.index.json`, content: Buffer.from(JSON.stringify({ metadata: {}, weight_map: weightMap })) },
    { rank: 0, name: `checkpoint-${step}/trainer_state.json`, content: Buffer.from(`{"step":${step}}`) },
  ];
}

before(async () => {
  server = await startTestServer();
  seeded = await seedJob(server, [...checkpoint(3000, false), ...checkpoint(4000, true)], { projectName: "llama-70b" });
});
after(() => server.stop());

const env = () => ({ CKPT_API_URL: server.baseUrl, CKPT_API_KEY: seeded.apiKey });
const ckpt = (args: string[], extraEnv: Record<string, string> = {}) => runCli(args, { env: { ...env(), ...extraEnv } });
/** What both ways must agree on; the digest comes only from servers that send one with the bytes. */
const comparable = (x: any) => ({ ...x, source: undefined, files: x.files.map((f: any) => ({ ...f, sha256: undefined })) });

test("ckpt inspect: the same answer through the extension and through Range reads", async () => {
  const viaExtension = await ckpt(["inspect", "--project", "llama-70b", "--checkpoint", "checkpoint-4000", "--via", "extension", "-o", "json"]);
  assert.equal(viaExtension.code, 0, viaExtension.stderr);
  const viaRange = await ckpt(["inspect", "--project", "llama-70b", "--checkpoint", "checkpoint-4000", "--via", "range", "-o", "json"]);
  assert.equal(viaRange.code, 0, viaRange.stderr);
  const a = JSON.parse(viaExtension.stdout);
  const b = JSON.parse(viaRange.stdout);
  assert.equal(a.source, "extension");
  assert.equal(b.source, "range");
  assert.deepEqual(comparable(b), comparable(a));
  assert.equal(a.tensor_count, MANY.length + 4);
  assert.equal(a.parameter_count, 32 * 8 + MANY.length * 4 + 32 * 16 + 8 + 8);
  assert.deepEqual(a.indexes.map((i: any) => [i.found, i.missing]), [[MANY.length + 3, 1]]);
  assert.deepEqual(a.missing_from_index.map((m: any) => m.name), ["gone"]);
});

test("ckpt inspect: table with a summary line; latest checkpoint by default; --file narrows", async () => {
  const r = await ckpt(["inspect", "--project", "llama-70b", "--file", "checkpoint-4000/model-2.safetensors"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^TENSOR +DTYPE +SHAPE +PARAMETERS\nlm_head +BF16 +\[32, 16\] +512\nnorm +F32 +\[8\] +8\nnew\.bias +F32 +\[8\] +8\n/);
  assert.match(r.stdout, /checkpoint-4000: 3 tensors, 528 parameters \(528\) in 1 safetensors file; BF16 1\.0 KiB, F32 64 B\n/);
  const whole = await ckpt(["inspect", "--project", "llama-70b"]);
  assert.match(whole.stdout, /index rank-0\/checkpoint-4000\/model\.safetensors\.index\.json: 2,503 of 2,504 tensors found, 1 missing\n  missing gone \(not in shard/);
  const bad = await ckpt(["inspect", "--project", "llama-70b", "--checkpoint", "nope"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /no checkpoint 'nope'/);
});

test("ckpt diff: exit 0 when identical, 1 with tensors added, removed, reshaped, retyped and files changed", async () => {
  const same = await ckpt(["diff", "--project", "llama-70b", "checkpoint-3000", `${seeded.jobId}:checkpoint-3000`]);
  assert.equal(same.code, 0, same.stderr);
  assert.match(same.stdout, /^identical\n$/);
  // An alias names its own job: no --job, and the same checkpoint is identical to itself.
  const set = await ckpt(["alias", "set", "prod", "--project", "llama-70b", "--checkpoint", "checkpoint-4000"]);
  assert.equal(set.code, 0, set.stderr);
  const aliased = await ckpt(["diff", "--project", "llama-70b", "@prod", "checkpoint-4000"]);
  assert.equal(aliased.code, 0, aliased.stderr);
  assert.match(aliased.stdout, /^identical\n$/);
  const inspected = await ckpt(["inspect", "--project", "llama-70b", "--checkpoint", "@prod", "-o", "json"]);
  assert.equal(inspected.code, 0, inspected.stderr);
  assert.equal(JSON.parse(inspected.stdout).checkpoint_id, "checkpoint-4000");

  const r = await ckpt(["diff", "--project", "llama-70b", "checkpoint-3000", "checkpoint-4000", "-o", "json"]);
  assert.equal(r.code, 1, r.stderr);
  const d = JSON.parse(r.stdout);
  assert.equal(d.identical, false);
  assert.deepEqual(d.added.map((t: any) => t.name), ["new.bias"]);
  assert.deepEqual(d.removed.map((t: any) => t.name), ["old.w"]);
  assert.deepEqual(d.changed.map((t: any) => [t.name, t.changes]), [["lm_head", ["reshaped"]], ["norm", ["retyped"]]]);
  assert.deepEqual(d.files.map((f: any) => [f.path, f.change]), [["model-2.safetensors", "sha256"], ["trainer_state.json", "sha256"]]);

  const table = await ckpt(["diff", "--project", "llama-70b", "checkpoint-3000", "checkpoint-4000", "--via", "range"]);
  assert.equal(table.code, 1);
  assert.match(table.stdout, /^\+ new\.bias  F32 \[8\]\n- old\.w  F32 \[4\]\n~ lm_head  BF16 \[32, 8\] -> BF16 \[32, 16\] \(reshaped\)\n~ norm  BF16 \[8\] -> F32 \[8\] \(retyped\)\n/m);
  // Through Range reads only the files read for their headers carry a digest (ckpt's blob route
  // sends it; Baseten's URLs do not); the others are compared by size, and the output says so.
  assert.match(table.stdout, /1 added, 1 removed, 2 changed tensors; [12] files? differs?\n\(\d files compared by size only/);

  const trouble = await ckpt(["diff", "--project", "llama-70b", "checkpoint-3000", "missing"]);
  assert.equal(trouble.code, 2, "trouble is 2, like diff(1)");
  assert.match((await ckpt(["diff", "--project", "llama-70b", "@best", "checkpoint-3000"])).stderr, /reports no best checkpoint/, "@best resolves through the server's aliases; this job's trainer_state.json names none");
});

test("against a server without the tensors route, inspect falls back to Range reads: one per file when the header fits", async () => {
  // A real proxy in front of the real server, answering 404 for the extension as Baseten would.
  const proxy = await startProxy();
  proxy.setTarget(server.baseUrl, { origin: server.blobOrigin, pathPrefix: server.blobPathPrefix });
  proxy.setRule((req) => (req.path.endsWith("/tensors") ? { kind: "respond", status: 404, body: '{"detail":"Not Found"}' } : { kind: "forward" }));
  try {
    const r = await ckpt(["inspect", "--project", "llama-70b", "--checkpoint", "checkpoint-3000", "-o", "json"], { CKPT_API_URL: proxy.url });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).source, "range");
  } finally {
    await proxy.close();
  }

  const ranges: string[] = [];
  const counting: typeof fetch = async (input, init) => {
    ranges.push(String(new Headers(init?.headers).get("range")));
    return fetch(input, init);
  };
  const x = await inspectCheckpoint(seeded.client, { projectId: seeded.projectId, jobId: seeded.jobId, checkpointId: "checkpoint-3000", via: "range", fetch: counting });
  assert.equal(x.tensor_count, MANY.length + 4);
  // Shard 1's header is larger than the first read: it alone takes a second request.
  assert.ok(safetensorsFile(MANY).readUInt32LE(0) > FIRST_READ_BYTES);
  assert.equal(ranges.length, 3 + 1, ranges.join(" "));
});
