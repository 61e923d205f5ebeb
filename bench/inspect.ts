/**
 * Scenario 7, inspection. Two claims of "Inspecting checkpoints" (README):
 *
 * a) Indexing at commit costs an upload nothing measurable: the same 1 GiB of bytes uploaded with
 *    one streamed PUT (`curl -T`) as `model.safetensors` (its header parsed from the bytes passing
 *    through) and as `model.bin` (no extractor), alternating, to the same `ckpt serve`. Target:
 *    indexed <= 1.02x the time of not indexed. The server's CPU time per upload is in the note.
 * b) `ckpt inspect` of a 50-shard checkpoint through the tensors route against the same command
 *    reading every shard's header through presigned URLs with Range (`--via range`, what works
 *    against Baseten), rotating; each side is one CLI process (start-up included: a user pays it).
 */
import { randomBytes } from "node:crypto";
import { closeSync, openSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { buildSafetensors } from "../src/formats/safetensors.js";
import { PrefixCollector, extractorFor, storeFacts } from "../src/domain/file-facts.js";
import { CKPT_CLI, GiB, MiB, run, startServer, tempDir, treeCpuTimeMs, type ServerHandle } from "./lib.js";
import { fmt, median, row, type Row } from "./report.js";
import { seedSqlite, type SeededJob } from "./seed.js";

/** A safetensors file of `bytes` of BF16 tensors of 4 MiB each (random data), written to `path`; returns its header. */
function writeSafetensors(path: string, bytes: number): Buffer {
  const count = Math.max(1, Math.round(bytes / (4 * MiB)));
  const { header, dataBytes } = buildSafetensors(Array.from({ length: count }, (_, i) => ({ name: `model.layers.${i}.mlp.up_proj.weight`, dtype: "BF16", shape: [1024, 2048] })));
  const block = randomBytes(8 * MiB);
  const fd = openSync(path, "w");
  try {
    writeSync(fd, header);
    for (let written = 0; written < dataBytes; ) {
      const n = Math.min(block.length, dataBytes - written);
      writeSync(fd, block, 0, n);
      written += n;
    }
  } finally {
    closeSync(fd);
  }
  return header;
}

/**
 * The work indexing adds to one upload, in this process: the collector fed the file's start in
 * 64 KiB chunks (as a socket delivers it), the header parsed and the facts row encoded. Median of
 * many runs: a figure a loaded machine cannot swamp, unlike two multi-second uploads.
 */
function indexingCpuMs(header: Buffer, fileSize: number): number {
  const start = Buffer.concat([header, Buffer.alloc(256 << 10)]);
  const times: number[] = [];
  for (let i = 0; i < 300; i++) {
    const t0 = performance.now();
    const collector = new PrefixCollector(extractorFor("m.safetensors")!, fileSize);
    for (let at = 0; at < start.length && collector.offer(start.subarray(at, at + (64 << 10))); at += 64 << 10);
    const stored = storeFacts(collector.facts(fileSize));
    if (stored.error !== null) throw new Error(stored.error);
    times.push(performance.now() - t0);
  }
  return median(times);
}

async function call(server: ServerHandle, job: SeededJob, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${server.baseUrl}/v1/training_projects/${job.projectId}${path}`, {
    method,
    headers: { authorization: `Api-Key ${job.apiKey}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

async function uploadCost(opts: { quick: boolean }): Promise<Row[]> {
  const size = opts.quick ? 256 * MiB : GiB;
  const rounds = Number(process.env.BENCH_INSPECT_ROUNDS) || (opts.quick ? 2 : 4);
  const src = tempDir("inspect-src");
  const data = tempDir("inspect-data");
  try {
    const file = join(src.path, "model.safetensors");
    const header = writeSafetensors(file, size);
    const job = await seedSqlite(data.path, 0);
    const server = await startServer({ dataDir: data.path });
    try {
      const sides = ["indexed", "plain"] as const;
      const seconds: Record<string, number[]> = { indexed: [], plain: [] };
      const cpu: Record<string, number[]> = { indexed: [], plain: [] };
      for (let r = 0; r < rounds; r++)
        for (let i = 0; i < sides.length; i++) {
          const side = sides[(i + r) % sides.length]!;
          const jobId = (await call(server, job, "POST", "/jobs", { training_job: { name: `inspect-${side}-${r}` } })).training_job.id;
          const name = side === "indexed" ? "checkpoint-1/model.safetensors" : "checkpoint-1/model.bin";
          const cpu0 = treeCpuTimeMs(server.pid);
          const t = await run("curl", ["-sS", "--fail", "-o", "/dev/null", "-H", `Authorization: Api-Key ${job.apiKey}`, "-T", file, `${server.baseUrl}/v1/training_projects/${job.projectId}/jobs/${jobId}/checkpoint_files/0/${name}`]);
          cpu[side]!.push(treeCpuTimeMs(server.pid) - cpu0);
          seconds[side]!.push(t.ms / 1000);
          if (side === "indexed") {
            const tensors = await call(server, job, "GET", `/jobs/${jobId}/checkpoints/checkpoint-1/tensors?page_size=1`);
            if (tensors.files[0]?.error !== null || tensors.total_count < 1) throw new Error(`the upload was not indexed: ${JSON.stringify(tensors).slice(0, 300)}`);
          }
          await call(server, job, "DELETE", `/jobs/${jobId}`);
        }
      const ours = median(seconds.indexed!);
      const theirs = median(seconds.plain!);
      const uploadCpu = median(cpu.plain!);
      const added = indexingCpuMs(header, statSync(file).size);
      return [
        row({
          scenario: `7a. the same upload: server CPU of the upload plus the work indexing adds vs the upload alone`,
          ckpt: uploadCpu + added,
          anchor: uploadCpu,
          unit: "ms",
          target: "<= 1.02x",
          meets: (x) => x <= 1.02,
          note: `indexing: ${fmt(added)} ms (median of 300 in-process runs: collector over 64 KiB chunks, parse of the ${header.length}-byte header, facts encoded); upload: median server CPU of the not-indexed uploads`,
        }),
        row({
          scenario: `7a. upload of a ${fmt(size / GiB)} GiB safetensors file (one streamed PUT): indexed at commit vs not indexed`,
          ckpt: ours,
          anchor: theirs,
          unit: "s",
          target: "<= 1.02x",
          meets: (x) => x <= 1.02,
          note: `${rounds} rotating rounds of curl -T; server CPU per upload ${fmt(median(cpu.indexed!))} ms indexed vs ${fmt(median(cpu.plain!))} ms not; same bytes, named .safetensors vs .bin`,
        }),
      ];
    } finally {
      await server.stop();
    }
  } finally {
    await src.remove();
    await data.remove();
  }
}

async function inspectFifty(opts: { quick: boolean }): Promise<Row[]> {
  const shards = 50;
  const tensorsPerShard = opts.quick ? 100 : 300;
  const rounds = Number(process.env.BENCH_INSPECT_ROUNDS) || (opts.quick ? 3 : 7);
  const data = tempDir("inspect50-data");
  try {
    const job = await seedSqlite(data.path, 0);
    const server = await startServer({ dataDir: data.path });
    try {
      const weightMap: Record<string, string> = {};
      const put = async (name: string, body: Buffer) => {
        const res = await fetch(`${server.baseUrl}/v1/training_projects/${job.projectId}/jobs/${job.jobId}/checkpoint_files/0/${name}`, {
          method: "PUT",
          headers: { authorization: `Api-Key ${job.apiKey}` },
          body,
        });
        if (res.status !== 201) throw new Error(`PUT ${name}: ${res.status}`);
      };
      for (let s = 0; s < shards; s++) {
        const shard = `model-${String(s + 1).padStart(5, "0")}-of-000${shards}.safetensors`;
        const tensors = Array.from({ length: tensorsPerShard }, (_, i) => ({ name: `model.layers.${s}.block.${i}.weight`, dtype: "BF16", shape: [32, 64] }));
        for (const t of tensors) weightMap[t.name] = shard;
        const { header, dataBytes } = buildSafetensors(tensors, { format: "pt" });
        await put(`checkpoint-100/${shard}`, Buffer.concat([header, Buffer.alloc(dataBytes)]));
      }
      await put("checkpoint-100/model.safetensors.index.json", Buffer.from(JSON.stringify({ metadata: {}, weight_map: weightMap })));
      const env = { PATH: process.env.PATH, HOME: process.env.HOME, CKPT_API_URL: server.baseUrl, CKPT_API_KEY: job.apiKey };
      const inspect = (via: string) => run(process.execPath, [CKPT_CLI, "inspect", "--project", job.projectId, "--job", job.jobId, "--checkpoint", "checkpoint-100", "--via", via, "-o", "json"], { env });
      const sides = ["extension", "range"] as const;
      const seconds: Record<string, number[]> = { extension: [], range: [] };
      for (let r = 0; r < rounds; r++)
        for (let i = 0; i < sides.length; i++) {
          const side = sides[(i + r) % sides.length]!;
          const t = await inspect(side);
          const parsed = JSON.parse(t.stdout) as { tensor_count: number; source: string };
          if (parsed.tensor_count !== shards * tensorsPerShard || parsed.source !== side) throw new Error(`inspect --via ${side} saw ${parsed.tensor_count} tensors (${parsed.source})`);
          seconds[side]!.push(t.ms / 1000);
        }
      const startup: number[] = [];
      for (let i = 0; i < 3; i++) startup.push((await run(process.execPath, [CKPT_CLI, "inspect", "--help"], { env, check: false })).ms / 1000);
      return [
        row({
          scenario: `7b. ckpt inspect of ${shards} shards x ${tensorsPerShard} tensors: tensors route vs Range reads of each header`,
          ckpt: median(seconds.extension!),
          anchor: median(seconds.range!),
          unit: "s",
          target: "faster (< 1x)",
          meets: (x) => x < 1,
          note: `${rounds} rotating rounds, one CLI process each (start-up ${fmt(median(startup))} s included); range: 8 headers at once, one request per shard plus the listing and the index`,
        }),
      ];
    } finally {
      await server.stop();
    }
  } finally {
    await data.remove();
  }
}

export async function runInspectBench(opts: { quick: boolean }): Promise<Row[]> {
  // BENCH_INSPECT_ONLY=upload|shards runs one half (BENCH_INSPECT_ROUNDS sets the rounds).
  const only = process.env.BENCH_INSPECT_ONLY;
  return [...(only === "shards" ? [] : await uploadCost(opts)), ...(only === "upload" ? [] : await inspectFifty(opts))];
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const { runStandalone } = await import("./run.js");
  await runStandalone([runInspectBench]);
}
