import type {
  AdapterConfigSummary,
  FileFactsRecord,
  IndexDetail,
  SafetensorsDetail,
  SafetensorsSummary,
  StoredTensor,
} from "./file-facts.js";
import type { FileRecord } from "./types.js";
import { checkWeightMaps, type CheckpointTensorsPage, type InspectedFile, type TensorEntry } from "../formats/checkpoint-tensors.js";
export type { CheckpointTensorsPage } from "../formats/checkpoint-tensors.js";

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
export function checkpointFactsOf(rows: (FileFactsRecord & { checkpointId: string | null })[]): Map<string, CheckpointFacts> {
  const out = new Map<string, CheckpointFacts>();
  const adapterDepth = new Map<string, number>();
  for (const row of rows) {
    if (row.checkpointId === null) continue; // root files belong to no checkpoint
    const checkpointId = row.checkpointId;
    let facts = out.get(checkpointId);
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

type Row = { file: FileRecord; facts: FileFactsRecord | null };
type DetailLoader = (nodeRank: number, relativeName: string) => Promise<string | null>;


/**
 * One page of a checkpoint's tensors: offsets into the sequence of every tensor of every file
 * (files by rank then name, tensors in file order), the paging of checkpoint_files. Files with no
 * tensors appear on the page where their position falls. Totals cover the whole checkpoint on every
 * page; the index check (which reads every shard's tensor names) comes with the first page only.
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

  const byName = new Map(rows.map((r) => [`${r.file.nodeRank}\u0000${r.file.relativeName}`, r]));
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

  // The index check reads every shard's tensor names: done once, on the first page, not per page.
  const { indexes, missing } = pageToken !== 0 ? { indexes: [], missing: [] } : await checkWeightMaps(
    rows.filter((r) => r.facts?.format === "safetensors_index").map(({ file, facts }) => ({
      nodeRank: file.nodeRank,
      relativeName: file.relativeName,
      error: facts!.error,
      tensorCount: facts!.tensorCount,
      weightMap: async () => parseJson<IndexDetail>(await loadDetail(file.nodeRank, file.relativeName))?.weight_map ?? {},
    })),
    async (nodeRank, name) => {
      const row = byName.get(`${nodeRank}\u0000${name}`);
      if (!row) return "absent";
      if (row.facts?.format !== "safetensors" || row.facts.error !== null) return "unreadable";
      return (await detailOf(nodeRank, name))?.tensors.map((t) => t.name) ?? "unreadable";
    },
  );
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

