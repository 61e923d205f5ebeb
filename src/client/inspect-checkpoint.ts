import type { CkptClient } from "./api.js";
import { runPool } from "./download/pool.js";
import { CkptApiError } from "./errors.js";
import type { CheckpointFile } from "./types.js";
import { checkpointIdOf } from "../domain/checkpoint-id.js";
import { isSha256Hex } from "../domain/digests.js";
import {
  checkWeightMaps,
  formatOfFileName,
  type CheckpointTensorsPage,
  type InspectedFile,
} from "../formats/checkpoint-tensors.js";
import { SAFETENSORS_MAX_HEADER_BYTES, headerBytesWanted, parseSafetensorsHeader, type SafetensorsHeader } from "../formats/safetensors.js";
import { ADAPTER_CONFIG_MAX_BYTES } from "../formats/peft-adapter-config.js";
import { SAFETENSORS_INDEX_MAX_BYTES, parseSafetensorsIndex } from "../formats/safetensors-index.js";

export type { CheckpointTensorsPage, InspectedFile, TensorEntry, IndexCheck, MissingTensor } from "../formats/checkpoint-tensors.js";

/** A whole checkpoint's tensors, every page merged; `source` says how it was learnt. */
export interface CheckpointInspection extends Omit<CheckpointTensorsPage, "next_page_token" | "total_count"> {
  source: "extension" | "range";
}

export interface InspectCheckpointOptions {
  projectId: string;
  jobId: string;
  /** A checkpoint id (a top-level folder), already resolved (not "latest"). */
  checkpointId: string;
  /** Only this relative_file_name. */
  fileName?: string;
  /**
   * "extension": ckpt's tensors route only; "range": read headers through presigned URLs (what
   * works against Baseten); "auto" (default): the route, falling back to Range reads when the
   * server has no such route.
   */
  via?: "auto" | "extension" | "range";
  /** Files whose headers are read at once in the Range fallback (default 8). */
  concurrency?: number;
  /** fetch for presigned URLs; the global one by default. */
  fetch?: typeof fetch;
}

/**
 * The first read of each file in the Range fallback: enough for the header of nearly every real
 * safetensors file (a 70B model's shards carry 10-100 KiB), so that costs one request per file.
 */
export const FIRST_READ_BYTES = 256 << 10;

/** What is in a checkpoint (tensor names, dtypes, shapes, parameter counts), without downloading it. */
export async function inspectCheckpoint(client: CkptClient, options: InspectCheckpointOptions): Promise<CheckpointInspection> {
  const via = options.via ?? "auto";
  if (via !== "range") {
    try {
      return await inspectThroughExtension(client, options);
    } catch (err) {
      // A server without the route answers 404 (or 405/501). A ckpt server's own 404 for an
      // unknown checkpoint falls back too, and the listing then says what exists.
      if (via === "extension" || !(err instanceof CkptApiError) || ![404, 405, 501].includes(err.status)) throw err;
    }
  }
  return inspectThroughRanges(client, options);
}

async function inspectThroughExtension(client: CkptClient, options: InspectCheckpointOptions): Promise<CheckpointInspection> {
  const path = `/v1/training_projects/${enc(options.projectId)}/jobs/${enc(options.jobId)}/checkpoints/${enc(options.checkpointId)}/tensors`;
  let token: number | null = 0;
  let first: CheckpointTensorsPage | null = null;
  const files = new Map<string, InspectedFile>();
  for (let pages = 0; token !== null; pages++) {
    const query: Record<string, string | number> = { page_token: token, page_size: 1000 };
    if (options.fileName !== undefined) query.file = options.fileName;
    const page: CheckpointTensorsPage = await client.request<CheckpointTensorsPage>("GET", path, { query });
    first ??= page;
    for (const file of page.files) {
      const key = `${file.node_rank}\u0000${file.relative_file_name}`;
      const seen = files.get(key);
      if (seen) seen.tensors.push(...file.tensors);
      else files.set(key, { ...file, tensors: [...file.tensors] });
    }
    // Stop on a token that does not move forward: a misbehaving server cannot loop us.
    const next: number | null = page.next_page_token;
    token = next !== null && next > token && page.files.length > 0 && pages < 1_000_000 ? next : null;
  }
  const { next_page_token: _n, total_count: _t, files: _f, ...totals } = first!;
  return { ...totals, files: [...files.values()], source: "extension" };
}

async function inspectThroughRanges(client: CkptClient, options: InspectCheckpointOptions): Promise<CheckpointInspection> {
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const listed: CheckpointFile[] = [];
  for await (const file of client.listCheckpointFiles({ projectId: options.projectId, jobId: options.jobId }))
    if (checkpointIdOf(file.relative_file_name) === options.checkpointId && (options.fileName === undefined || file.relative_file_name === options.fileName))
      listed.push(file);
  if (listed.length === 0)
    throw new CkptApiError(404, options.fileName === undefined ? `checkpoint '${options.checkpointId}' not found` : `file '${options.fileName}' not found in checkpoint '${options.checkpointId}'`);
  listed.sort((a, b) => a.node_rank - b.node_rank || (a.relative_file_name < b.relative_file_name ? -1 : a.relative_file_name > b.relative_file_name ? 1 : 0));

  const read = await mapLimited(listed, options.concurrency ?? 8, (file) => readFile(fetchImpl, file));
  const headers = new Map<string, SafetensorsHeader | null>();
  const weightMaps: { file: CheckpointFile; error: string | null; weightMap: Record<string, string> }[] = [];
  const files: InspectedFile[] = [];
  let parameterCount: number | null = null;
  const bytesByDtype: Record<string, number> = {};
  let tensorCount = 0;
  listed.forEach((file, i) => {
    const got = read[i]!;
    const entry: InspectedFile = {
      node_rank: file.node_rank,
      relative_file_name: file.relative_file_name,
      size_bytes: file.size_bytes,
      sha256: got.sha256,
      format: got.format,
      error: got.error,
      parameter_count: null,
      bytes_by_dtype: null,
      metadata: null,
      tensor_count: 0,
      tensors: [],
    };
    if (got.format === "safetensors") {
      headers.set(`${file.node_rank}\u0000${file.relative_file_name}`, got.header);
      const h = got.header;
      if (h) {
        Object.assign(entry, { parameter_count: h.parameterCount, bytes_by_dtype: h.bytesByDtype, metadata: h.metadata, tensor_count: h.tensors.length });
        entry.tensors = h.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, parameters: t.parameters, data_offsets: t.dataOffsets }));
        parameterCount = (parameterCount ?? 0) + h.parameterCount;
        tensorCount += h.tensors.length;
        for (const [dtype, bytes] of Object.entries(h.bytesByDtype)) bytesByDtype[dtype] = (bytesByDtype[dtype] ?? 0) + bytes;
      }
    } else if (got.format === "safetensors_index") {
      entry.tensor_count = Object.keys(got.weightMap ?? {}).length;
      weightMaps.push({ file, error: got.error, weightMap: got.weightMap ?? {} });
    }
    files.push(entry);
  });
  const { indexes, missing } = await checkWeightMaps(
    weightMaps.map(({ file, error, weightMap }) => ({
      nodeRank: file.node_rank,
      relativeName: file.relative_file_name,
      error,
      tensorCount: Object.keys(weightMap).length,
      weightMap: async () => weightMap,
    })),
    async (rank, name) => {
      const key = `${rank}\u0000${name}`;
      if (!headers.has(key)) return "absent";
      return headers.get(key)?.tensors.map((t) => t.name) ?? "unreadable";
    },
  );
  return {
    checkpoint_id: options.checkpointId,
    parameter_count: parameterCount,
    bytes_by_dtype: bytesByDtype,
    tensor_count: tensorCount,
    files,
    indexes,
    missing_from_index: missing,
    source: "range",
  };
}

interface ReadFile {
  format: InspectedFile["format"];
  error: string | null;
  sha256: string | null;
  header: SafetensorsHeader | null;
  weightMap: Record<string, string> | null;
}

/** One file's facts through its presigned URL: one ranged GET, a second only for a header larger than the first read. */
async function readFile(fetchImpl: typeof fetch, file: CheckpointFile): Promise<ReadFile> {
  const format = formatOfFileName(file.relative_file_name);
  const result: ReadFile = { format, error: null, sha256: null, header: null, weightMap: null };
  if (format === null) return result;
  try {
    if (format === "safetensors") {
      const size = file.size_bytes;
      let prefix = size === 0 ? new Uint8Array(0) : await readRange(fetchImpl, file, 0, Math.min(size, FIRST_READ_BYTES), result);
      const wanted = headerBytesWanted(prefix, size, SAFETENSORS_MAX_HEADER_BYTES);
      if (wanted > prefix.length && wanted <= size) {
        const rest = await readRange(fetchImpl, file, prefix.length, wanted - prefix.length, result);
        prefix = Buffer.concat([prefix, rest]);
      }
      const parsed = parseSafetensorsHeader(prefix, size);
      if (parsed.ok) result.header = parsed.header;
      else result.error = parsed.error;
    } else {
      const cap = format === "safetensors_index" ? SAFETENSORS_INDEX_MAX_BYTES : ADAPTER_CONFIG_MAX_BYTES;
      if (file.size_bytes > cap) result.error = `file of ${file.size_bytes} bytes is above the ${cap}-byte limit`;
      else if (format === "safetensors_index") {
        const parsed = parseSafetensorsIndex(await readRange(fetchImpl, file, 0, file.size_bytes, result), file.size_bytes);
        if (parsed.ok) result.weightMap = parsed.index.weightMap;
        else result.error = parsed.error;
      }
    }
  } catch (err) {
    result.error = `could not be read: ${(err as Error).message}`;
  }
  return result;
}

/**
 * `length` bytes from `start`, with a Range request; a server that ignores Range (200) is read
 * only as far as needed. Notes the file's digest when the server sends one (ckpt does).
 */
async function readRange(fetchImpl: typeof fetch, file: CheckpointFile, start: number, length: number, into: { sha256: string | null }): Promise<Buffer> {
  if (length === 0) return Buffer.alloc(0);
  const response = await fetchImpl(file.url, { headers: { range: `bytes=${start}-${start + length - 1}` } });
  if (response.status !== 206 && response.status !== 200) {
    await response.body?.cancel().catch(() => {});
    throw new Error(`HTTP ${response.status}`);
  }
  const digest = response.headers.get("x-ckpt-sha256");
  if (isSha256Hex(digest)) into.sha256 = digest;
  const skip = response.status === 200 ? start : 0;
  const chunks: Buffer[] = [];
  let got = 0;
  const reader = response.body!.getReader();
  try {
    while (got < skip + length) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(Buffer.from(value));
      got += value.length;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const all = Buffer.concat(chunks);
  if (all.length < skip + length) throw new Error(`the file ended after ${all.length - skip} of ${length} bytes`);
  return all.subarray(skip, skip + length);
}

async function mapLimited<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  await runPool(
    items.map((item, index) => ({ item, index })),
    limit,
    async ({ item, index }) => {
      out[index] = await work(item);
    },
  );
  return out;
}

const enc = encodeURIComponent;
