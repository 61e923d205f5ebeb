import type {
  AdapterConfigSummary,
  FileFactsRecord,
  IndexDetail,
  SafetensorsDetail,
  SafetensorsSummary,
  StoredTensor,
} from "./file-facts.js";
import type { FileRecord } from "./types.js";

/**
 * What a checkpoint's stored file facts add up to: the fields Baseten's checkpoints listing fills
 * from the checkpoint (base_model, lora_adapter_config, checkpoint_type) and ckpt's parameter
 * count, and the pages of the tensors route. Pure functions over store rows.
 */

export interface CheckpointFacts {
  /** Elements of every valid safetensors file of the checkpoint, all ranks; null when it has none. */
  parameterCount: number | null;
  baseModel: string | null;
  /** The PEFT adapter_config.json as written, or null when the checkpoint holds none. */
  loraAdapterConfig: Record<string, unknown> | null;
  /** Tensors named like LoRA's: a LoRA checkpoint even without its adapter_config.json. */
  holdsLoraTensors: boolean;
}

export const LISTING_FACT_FORMATS = ["safetensors", "peft_adapter_config"] as const;

const parseJson = <T>(text: string | null): T | null => {
  if (text === null) return null;
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
};

const depthOf = (name: string) => name.split("/").length;

/** Per checkpoint id. Of several adapter configs, the shallowest (then lowest rank) speaks for it. */
export function checkpointFactsOf(rows: (FileFactsRecord & { checkpointId: string })[]): Map<string, CheckpointFacts> {
  const out = new Map<string, CheckpointFacts>();
  const adapterDepth = new Map<string, number>();
  for (const row of rows) {
    let facts = out.get(row.checkpointId);
    if (!facts) out.set(row.checkpointId, (facts = { parameterCount: null, baseModel: null, loraAdapterConfig: null, holdsLoraTensors: false }));
    if (row.format === "safetensors" && row.error === null) {
      facts.parameterCount = (facts.parameterCount ?? 0) + (row.parameterCount ?? 0);
      if (parseJson<SafetensorsSummary>(row.summary)?.lora_tensors) facts.holdsLoraTensors = true;
    } else if (row.format === "peft_adapter_config" && row.error === null) {
      const depth = depthOf(row.relativeName);
      if (depth >= (adapterDepth.get(row.checkpointId) ?? Infinity)) continue;
      const adapter = parseJson<AdapterConfigSummary>(row.summary);
      if (!adapter?.config) continue;
      adapterDepth.set(row.checkpointId, depth);
      facts.baseModel = adapter.base_model;
      facts.loraAdapterConfig = adapter.config;
    }
  }
  return out;
}

// --- The tensors route ---------------------------------------------------------------------------

export interface TensorEntry {
  name: string;
  dtype: string;
  shape: number[];
  /** Elements: the product of the shape. */
  parameters: number;
  /** [start, end) within the file's data section (which begins at byte 8 + header length). */
  data_offsets: [number, number];
}

export interface InspectedFile {
  node_rank: number;
  relative_file_name: string;
  size_bytes: number;
  sha256: string | null;
  /** "safetensors", "safetensors_index", "peft_adapter_config"; null for a file ckpt does not read. */
  format: string | null;
  /** Why the file's contents could not be read as its format; null when they could. */
  error: string | null;
  parameter_count: number | null;
  bytes_by_dtype: Record<string, number> | null;
  metadata: Record<string, string> | null;
  tensor_count: number;
  /** The file's tensors that fall in this page, in file order. */
  tensors: TensorEntry[];
}

export interface IndexCheck {
  node_rank: number;
  relative_file_name: string;
  error: string | null;
  tensor_count: number;
  found: number;
  missing: number;
}

export interface MissingTensor {
  name: string;
  node_rank: number;
  /** The index that names it. */
  index_file: string;
  /** The shard the index says holds it. */
  shard: string;
  /** "shard absent", "shard unreadable", "not in shard". */
  reason: string;
}

export interface CheckpointTensorsPage {
  checkpoint_id: string;
  parameter_count: number | null;
  bytes_by_dtype: Record<string, number>;
  tensor_count: number;
  files: InspectedFile[];
  indexes: IndexCheck[];
  missing_from_index: MissingTensor[];
  next_page_token: number | null;
  total_count: number;
}

type Row = { file: FileRecord; facts: FileFactsRecord | null };
type DetailLoader = (nodeRank: number, relativeName: string) => Promise<string | null>;

const MAX_MISSING_LISTED = 10_000;

/**
 * One page of a checkpoint's tensors: offsets into the sequence of every tensor of every file
 * (files by rank then name, tensors in file order), the paging of checkpoint_files. Files with no
 * tensors appear on the page where their position falls. Totals and the index check cover the
 * whole checkpoint on every page.
 */
export async function pageCheckpointTensors(
  checkpointId: string,
  rows: Row[],
  loadDetail: DetailLoader,
  pageToken: number,
  pageSize: number,
): Promise<CheckpointTensorsPage> {
  let total = 0;
  let parameterCount: number | null = null;
  const bytesByDtype: Record<string, number> = {};
  const slots: { row: Row; start: number; end: number }[] = [];
  for (const row of rows) {
    const facts = row.facts;
    const count = facts?.format === "safetensors" && facts.error === null ? facts.tensorCount : 0;
    slots.push({ row, start: total, end: total + count });
    total += count;
    if (facts?.format === "safetensors" && facts.error === null) {
      parameterCount = (parameterCount ?? 0) + (facts.parameterCount ?? 0);
      const summary = parseJson<SafetensorsSummary>(facts.summary);
      for (const [dtype, bytes] of Object.entries(summary?.bytes_by_dtype ?? {})) bytesByDtype[dtype] = (bytesByDtype[dtype] ?? 0) + bytes;
    }
  }

  const pageEnd = pageToken + pageSize;
  const lastPage = pageEnd >= total;
  const files: InspectedFile[] = [];
  const details = new Map<string, SafetensorsDetail | null>();
  const detailOf = async (nodeRank: number, name: string) => {
    const key = `${nodeRank}\u0000${name}`;
    if (!details.has(key)) details.set(key, parseJson<SafetensorsDetail>(await loadDetail(nodeRank, name)));
    return details.get(key)!;
  };
  for (const { row, start, end } of slots) {
    const onPage = start === end ? start >= pageToken && (start < pageEnd || lastPage) : start < pageEnd && end > pageToken;
    if (!onPage) continue;
    const { file, facts } = row;
    let tensors: TensorEntry[] = [];
    let metadata: Record<string, string> | null = null;
    if (facts?.format === "safetensors" && facts.error === null) {
      const detail = await detailOf(file.nodeRank, file.relativeName);
      metadata = detail?.metadata ?? null;
      const from = Math.max(0, pageToken - start);
      const to = Math.min(end, pageEnd) - start;
      tensors = (detail?.tensors ?? []).slice(from, to).map(presentTensor);
    }
    const summary = facts?.format === "safetensors" ? parseJson<SafetensorsSummary>(facts.summary) : null;
    files.push({
      node_rank: file.nodeRank,
      relative_file_name: file.relativeName,
      size_bytes: file.sizeBytes,
      sha256: file.sha256,
      format: facts?.format ?? null,
      error: facts?.error ?? null,
      parameter_count: facts?.format === "safetensors" ? facts.parameterCount : null,
      bytes_by_dtype: summary?.bytes_by_dtype ?? null,
      metadata,
      tensor_count: facts?.format === "safetensors" || facts?.format === "safetensors_index" ? facts.tensorCount : 0,
      tensors,
    });
  }

  const { indexes, missing } = await checkIndexes(rows, loadDetail, detailOf);
  return {
    checkpoint_id: checkpointId,
    parameter_count: parameterCount,
    bytes_by_dtype: bytesByDtype,
    tensor_count: total,
    files,
    indexes,
    missing_from_index: missing,
    next_page_token: lastPage ? null : pageEnd,
    total_count: total,
  };
}

function presentTensor(t: StoredTensor): TensorEntry {
  return { name: t.name, dtype: t.dtype, shape: t.shape, parameters: t.shape.reduce((a, b) => a * b, 1), data_offsets: t.data_offsets };
}

/** Every weight_map entry of every index, looked up in the shard it names (same rank, relative to the index's folder). */
async function checkIndexes(
  rows: Row[],
  loadDetail: DetailLoader,
  detailOf: (nodeRank: number, name: string) => Promise<SafetensorsDetail | null>,
): Promise<{ indexes: IndexCheck[]; missing: MissingTensor[] }> {
  const byName = new Map(rows.map((r) => [`${r.file.nodeRank}\u0000${r.file.relativeName}`, r]));
  const indexes: IndexCheck[] = [];
  const missing: MissingTensor[] = [];
  const namesOf = new Map<string, Set<string> | null>();
  for (const { file, facts } of rows) {
    if (facts?.format !== "safetensors_index") continue;
    const check: IndexCheck = { node_rank: file.nodeRank, relative_file_name: file.relativeName, error: facts.error, tensor_count: facts.tensorCount, found: 0, missing: 0 };
    indexes.push(check);
    if (facts.error !== null) continue;
    const weightMap = parseJson<IndexDetail>(await loadDetail(file.nodeRank, file.relativeName))?.weight_map ?? {};
    const folder = file.relativeName.includes("/") ? file.relativeName.slice(0, file.relativeName.lastIndexOf("/") + 1) : "";
    for (const [name, shard] of Object.entries(weightMap)) {
      const shardName = folder + shard;
      const key = `${file.nodeRank}\u0000${shardName}`;
      let reason: string | null = null;
      const shardRow = byName.get(key);
      if (!shardRow) reason = "shard absent";
      else if (shardRow.facts?.format !== "safetensors" || shardRow.facts.error !== null) reason = "shard unreadable";
      else {
        if (!namesOf.has(key)) {
          const detail = await detailOf(file.nodeRank, shardName);
          namesOf.set(key, detail ? new Set(detail.tensors.map((t) => t.name)) : null);
        }
        if (!namesOf.get(key)?.has(name)) reason = "not in shard";
      }
      if (reason === null) check.found++;
      else {
        check.missing++;
        if (missing.length < MAX_MISSING_LISTED) missing.push({ name, node_rank: file.nodeRank, index_file: file.relativeName, shard: shardName, reason });
      }
    }
  }
  return { indexes, missing };
}
