import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestServer, type TestServer } from "../harness/server.js";
import { setupJob, sha256 } from "../helpers/api.js";
import { assertBasetenShape } from "../helpers/spec.js";
import { EVERY_DTYPE, HOSTILE_HEADERS, rawSafetensors, safetensorsFile } from "../helpers/safetensors.js";

const PART = 5 << 20;
let server: TestServer;
before(async () => {
  server = await startTestServer({ env: { CKPT_UPLOAD_PART_SIZE: String(PART) } });
});
after(() => server.stop());

type Job = Awaited<ReturnType<typeof setupJob>>;

/** The direct-upload protocol: begin, PUT each part to its URL, complete (ranged read of the header at completion). */
async function directUpload(job: Job, rank: number, name: string, bytes: Buffer) {
  const begin = await job.client.post(`${job.jobPath}/uploads`, { node_rank: rank, relative_file_name: name, size_bytes: bytes.length, sha256: sha256(bytes) });
  assert.equal(begin.status, 200, JSON.stringify(begin.body));
  const parts = [];
  for (const part of begin.body.parts) {
    const start = (part.part_number - 1) * begin.body.part_size_bytes;
    const r = await fetch(part.url, { method: "PUT", body: bytes.subarray(start, start + part.size_bytes) });
    await r.arrayBuffer();
    assert.equal(r.status, 200);
    parts.push({ part_number: part.part_number, etag: r.headers.get("etag")! });
  }
  return job.client.post(`${job.jobPath}/uploads/${begin.body.upload_id}/complete`, { parts });
}

const UPLOADERS = {
  "streamed PUT": (job: Job, rank: number, name: string, bytes: Buffer) => job.upload(rank, name, bytes),
  "direct upload": directUpload,
};

const tensorsOf = (job: Job, checkpoint: string, query = "") => job.client.get(`${job.jobPath}/checkpoints/${encodeURIComponent(checkpoint)}/tensors${query}`);
const checkpointsOf = async (job: Job) => {
  const r = await job.client.get(`${job.jobPath}/checkpoints`);
  assert.equal(r.status, 200);
  assertBasetenShape("GetTrainingJobCheckpointsResponseV1", r.body);
  return new Map<string, any>(r.body.checkpoints.map((c: any) => [c.checkpoint_id, c]));
};

for (const [via, send] of Object.entries(UPLOADERS)) {
  describe(`safetensors indexed at commit (${via})`, () => {
    test("every dtype of the format: name, dtype, shape, byte range, parameters; totals per dtype", async () => {
      const job = await setupJob(server, `dtypes-${via}`);
      const bytes = safetensorsFile(EVERY_DTYPE, { format: "pt", step: "100" });
      assert.equal((await send(job, 0, "checkpoint-100/model.safetensors", bytes)).status, 201);
      const r = await tensorsOf(job, "checkpoint-100");
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const [file] = r.body.files;
      assert.equal(file.format, "safetensors");
      assert.equal(file.error, null);
      assert.deepEqual(file.metadata, { format: "pt", step: "100" });
      assert.equal(file.sha256, sha256(bytes));
      assert.deepEqual(
        file.tensors.map((t: any) => [t.name, t.dtype, t.shape, t.parameters]),
        EVERY_DTYPE.map((t) => [t.name, t.dtype, [2, 4], 8]),
      );
      // 8 elements: 4 bytes of F4, 6 of F6_*, 8 of each 8-bit type, 64 of C64.
      assert.equal(r.body.bytes_by_dtype.F4, 4);
      assert.equal(r.body.bytes_by_dtype.F6_E2M3, 6);
      assert.equal(r.body.bytes_by_dtype.F8_E8M0, 8);
      assert.equal(r.body.bytes_by_dtype.C64, 64);
      const f4 = file.tensors.find((t: any) => t.dtype === "F4");
      assert.equal(f4.data_offsets[1] - f4.data_offsets[0], 4);
      assert.equal(r.body.parameter_count, 8 * EVERY_DTYPE.length);
      assert.equal(r.body.total_count, EVERY_DTYPE.length);
      assert.equal(r.body.next_page_token, null);
      const listed = await checkpointsOf(job);
      assert.equal(listed.get("checkpoint-100").parameter_count, 8 * EVERY_DTYPE.length);
      assert.equal(listed.get("checkpoint-100").checkpoint_type, "full");
    });

    test("hostile headers: the file is committed and downloadable; its inspection says error with the reason", async () => {
      const job = await setupJob(server, `hostile-${via}`);
      for (const { name, bytes } of HOSTILE_HEADERS) {
        const r = await send(job, 0, `bad/${name}.safetensors`, bytes);
        assert.equal(r.status, 201, `${name}: ${JSON.stringify(r.body)}`);
      }
      const listing = (await job.client.get(`${job.jobPath}/checkpoint_files`)).body;
      assert.equal(listing.total_count, HOSTILE_HEADERS.length);
      const r = await tensorsOf(job, "bad");
      assert.equal(r.status, 200);
      const byName = new Map(r.body.files.map((f: any) => [f.relative_file_name, f]));
      for (const { name, reason } of HOSTILE_HEADERS) {
        const f: any = byName.get(`bad/${name}.safetensors`);
        assert.equal(f.format, "safetensors");
        assert.match(f.error ?? "(no error)", reason, name);
        assert.deepEqual(f.tensors, []);
        assert.equal(f.parameter_count, null);
      }
      assert.equal(r.body.parameter_count, null);
      assert.equal((await checkpointsOf(job)).get("bad").parameter_count, null);
    });
  });
}

describe("PEFT adapter_config.json fills the checkpoints listing", () => {
  const adapter = (r: number) =>
    Buffer.from(JSON.stringify({ peft_type: "LORA", base_model_name_or_path: "meta-llama/Llama-3.1-8B", r, lora_alpha: 2 * r, target_modules: ["q_proj", "v_proj"], lora_dropout: 0.05, task_type: "CAUSAL_LM" }));

  test("base_model, lora_adapter_config (r, lora_alpha, target_modules) and checkpoint_type lora; kept right when replaced", async () => {
    const job = await setupJob(server, "peft");
    await job.upload(0, "checkpoint-10/adapter_config.json", adapter(64));
    await job.upload(0, "checkpoint-10/adapter_model.safetensors", safetensorsFile([{ name: "base_model.model.layers.0.q_proj.lora_A.weight", dtype: "BF16", shape: [64, 128] }]));
    await job.upload(0, "checkpoint-20/model.safetensors", safetensorsFile([{ name: "w", dtype: "BF16", shape: [4, 4] }]));
    let listed = await checkpointsOf(job);
    const lora = listed.get("checkpoint-10");
    assert.equal(lora.checkpoint_type, "lora");
    assert.equal(lora.base_model, "meta-llama/Llama-3.1-8B");
    assert.equal(lora.lora_adapter_config.r, 64);
    assert.equal(lora.lora_adapter_config.lora_alpha, 128);
    assert.deepEqual(lora.lora_adapter_config.target_modules, ["q_proj", "v_proj"]);
    assert.equal(lora.parameter_count, 64 * 128);
    const full = listed.get("checkpoint-20");
    assert.deepEqual([full.checkpoint_type, full.base_model, full.lora_adapter_config], ["full", null, null]);

    await job.upload(0, "checkpoint-10/adapter_config.json", adapter(16));
    listed = await checkpointsOf(job);
    assert.equal(listed.get("checkpoint-10").lora_adapter_config.r, 16);

    // Replaced by something that is not an adapter config (NUL bytes: the reason quotes them,
    // which PostgreSQL refused before they were escaped): the listing stops claiming one.
    assert.equal((await job.upload(0, "checkpoint-10/adapter_config.json", Buffer.alloc(10))).status, 201);
    listed = await checkpointsOf(job);
    assert.equal(listed.get("checkpoint-10").lora_adapter_config, null);
    assert.equal(listed.get("checkpoint-10").base_model, null);
  });

  test("LoRA tensors without an adapter_config.json still make a lora checkpoint", async () => {
    const job = await setupJob(server, "peft-tensors");
    await job.upload(0, "ckpt-1/adapter_model.safetensors", safetensorsFile([{ name: "base_model.model.layers.0.v_proj.lora_B.weight", dtype: "F32", shape: [8, 8] }]));
    assert.equal((await checkpointsOf(job)).get("ckpt-1").checkpoint_type, "lora");
  });

  test("a direct upload's adapter config is read at completion", async () => {
    const job = await setupJob(server, "peft-direct");
    assert.equal((await directUpload(job, 0, "c/adapter_config.json", adapter(32))).status, 201);
    assert.equal((await checkpointsOf(job)).get("c").lora_adapter_config.r, 32);
  });
});

describe("sharded models and paging", () => {
  test("model.safetensors.index.json: every weight_map tensor found or missing", async () => {
    const job = await setupJob(server, "sharded");
    const shard1 = safetensorsFile([{ name: "a", dtype: "F16", shape: [2] }, { name: "b", dtype: "F16", shape: [2] }]);
    const shard2 = safetensorsFile([{ name: "c", dtype: "F16", shape: [2] }]);
    const index = { metadata: { total_size: 12 }, weight_map: { a: "model-1.safetensors", b: "model-1.safetensors", c: "model-2.safetensors", d: "model-2.safetensors", e: "model-3.safetensors" } };
    await job.upload(0, "step-5/model.safetensors.index.json", Buffer.from(JSON.stringify(index)));
    await job.upload(0, "step-5/model-1.safetensors", shard1);
    await job.upload(0, "step-5/model-2.safetensors", shard2);
    const r = await tensorsOf(job, "step-5");
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.indexes, [{ node_rank: 0, relative_file_name: "step-5/model.safetensors.index.json", error: null, tensor_count: 5, found: 3, missing: 2 }]);
    assert.deepEqual(
      r.body.missing_from_index.map((m: any) => [m.name, m.shard, m.reason]),
      [["d", "step-5/model-2.safetensors", "not in shard"], ["e", "step-5/model-3.safetensors", "shard absent"]],
    );
    assert.equal(r.body.parameter_count, 6);
    // The check reads every shard's tensor names, so it comes once: with the first page.
    const later = await tensorsOf(job, "step-5", "?page_size=1&page_token=1");
    assert.deepEqual([later.body.indexes, later.body.missing_from_index, later.body.parameter_count], [[], [], 6]);
  });

  test("pages over tensors by offset visit each once; ?file= narrows to one file; unknown ids are 404", async () => {
    const job = await setupJob(server, "paging");
    const tensors = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => ({ name: `${prefix}.${i}`, dtype: "F32", shape: [i + 1] }));
    await job.upload(0, "c/a.safetensors", safetensorsFile(tensors("a", 4)));
    await job.upload(0, "c/notes.txt", Buffer.from("hello"));
    await job.upload(1, "c/b.safetensors", safetensorsFile(tensors("b", 3)));
    const seen: string[] = [];
    let token: number | null = 0;
    let pages = 0;
    while (token !== null) {
      const r: any = await tensorsOf(job, "c", `?page_size=3&page_token=${token}`);
      assert.equal(r.status, 200);
      assert.equal(r.body.total_count, 7);
      for (const f of r.body.files) for (const t of f.tensors) seen.push(t.name);
      token = r.body.next_page_token;
      pages++;
    }
    assert.equal(pages, 3);
    assert.deepEqual(seen, [...tensors("a", 4), ...tensors("b", 3)].map((t) => t.name));
    const one = await tensorsOf(job, "c", "?file=c/b.safetensors");
    assert.deepEqual(one.body.files.map((f: any) => [f.node_rank, f.tensor_count]), [[1, 3]]);
    assert.equal(one.body.parameter_count, 6);
    assert.equal((await tensorsOf(job, "nope")).status, 404);
    assert.equal((await tensorsOf(job, "c", "?file=c/zzz")).status, 404);
    assert.equal((await tensorsOf(job, "c", "?page_size=x")).status, 400);
  });

  test("a replaced file's tensors are the new file's", async () => {
    const job = await setupJob(server, "replaced");
    await job.upload(0, "c/m.safetensors", safetensorsFile([{ name: "old", dtype: "F32", shape: [2] }]));
    await job.upload(0, "c/m.safetensors", rawSafetensors("{bad", 0));
    let r = await tensorsOf(job, "c");
    assert.match(r.body.files[0].error, /not valid JSON/);
    await job.upload(0, "c/m.safetensors", safetensorsFile([{ name: "new", dtype: "F32", shape: [3] }]));
    r = await tensorsOf(job, "c");
    assert.deepEqual(r.body.files[0].tensors.map((t: any) => t.name), ["new"]);
    assert.equal(r.body.files[0].error, null);
  });
});
