/**
 * The tensor listing of a checkpoint, as the tensors route answers it and as the client builds it
 * itself (from headers read through presigned URLs) against a server without that route; and the
 * shard-index check both sides run. Dependency-free, like the parsers beside it.
 */

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

const MAX_MISSING_LISTED = 10_000;

export interface IndexToCheck {
  nodeRank: number;
  relativeName: string;
  error: string | null;
  tensorCount: number;
  weightMap(): Promise<Record<string, string>>;
}

/**
 * Looks every weight_map entry of every index up in the shard it names (same rank, relative to the
 * index's folder). `shardTensors` answers a shard's tensor names, or why it has none.
 */
export async function checkWeightMaps(
  indexes: IndexToCheck[],
  shardTensors: (nodeRank: number, relativeName: string) => Promise<readonly string[] | "absent" | "unreadable">,
): Promise<{ indexes: IndexCheck[]; missing: MissingTensor[] }> {
  const checks: IndexCheck[] = [];
  const missing: MissingTensor[] = [];
  const shards = new Map<string, Set<string> | "absent" | "unreadable">();
  for (const index of indexes) {
    const check: IndexCheck = { node_rank: index.nodeRank, relative_file_name: index.relativeName, error: index.error, tensor_count: index.tensorCount, found: 0, missing: 0 };
    checks.push(check);
    if (index.error !== null) continue;
    const slash = index.relativeName.lastIndexOf("/");
    const folder = slash === -1 ? "" : index.relativeName.slice(0, slash + 1);
    for (const [name, shard] of Object.entries(await index.weightMap())) {
      const shardName = folder + shard;
      const key = `${index.nodeRank}\u0000${shardName}`;
      if (!shards.has(key)) {
        const names = await shardTensors(index.nodeRank, shardName);
        shards.set(key, typeof names === "string" ? names : new Set(names));
      }
      const names = shards.get(key)!;
      const reason = names === "absent" ? "shard absent" : names === "unreadable" ? "shard unreadable" : names.has(name) ? null : "not in shard";
      if (reason === null) check.found++;
      else {
        check.missing++;
        if (missing.length < MAX_MISSING_LISTED) missing.push({ name, node_rank: index.nodeRank, index_file: index.relativeName, shard: shardName, reason });
      }
    }
  }
  return { indexes: checks, missing };
}

/** The format ckpt reads a file as, by its name alone; null for every other file. */
export type InspectedFormat = "safetensors" | "safetensors_index" | "peft_adapter_config";
export function formatOfFileName(relativeName: string): InspectedFormat | null {
  const base = relativeName.slice(relativeName.lastIndexOf("/") + 1);
  if (base.endsWith(".safetensors")) return "safetensors";
  if (base.endsWith(".safetensors.index.json")) return "safetensors_index";
  if (base === "adapter_config.json") return "peft_adapter_config";
  return null;
}
