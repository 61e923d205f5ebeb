/**
 * `model.safetensors.index.json` of a sharded model (transformers' `save_pretrained`): `weight_map`
 * names, for every tensor, the shard file (relative to the index's folder) that holds it.
 */

/** Indexes of the largest models are a few MiB; past this one is not an index. */
export const SAFETENSORS_INDEX_MAX_BYTES = 16 << 20;

export interface SafetensorsIndex {
  metadata: Record<string, unknown> | null;
  /** Tensor name -> shard file name. */
  weightMap: Record<string, string>;
}

export type SafetensorsIndexParse = { ok: true; index: SafetensorsIndex } | { ok: false; error: string };

export function parseSafetensorsIndex(bytes: Uint8Array, fileSize: number): SafetensorsIndexParse {
  if (fileSize > SAFETENSORS_INDEX_MAX_BYTES) return { ok: false, error: `index of ${fileSize} bytes is above the ${SAFETENSORS_INDEX_MAX_BYTES}-byte limit` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, fileSize)));
  } catch (err) {
    return { ok: false, error: `index is not valid UTF-8 JSON (${(err as Error).message})` };
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return { ok: false, error: "index is not a JSON object" };
  const { weight_map: map, metadata } = parsed as Record<string, unknown>;
  if (map === null || typeof map !== "object" || Array.isArray(map)) return { ok: false, error: "index has no weight_map object" };
  // No prototype: a tensor named "__proto__" must stay an entry, not become one.
  const weightMap: Record<string, string> = Object.create(null);
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== "string") return { ok: false, error: `weight_map entry '${name.slice(0, 120)}' is not a file name` };
    weightMap[name] = shard;
  }
  const meta = metadata !== null && typeof metadata === "object" && !Array.isArray(metadata) ? (metadata as Record<string, unknown>) : null;
  return { ok: true, index: { metadata: meta, weightMap } };
}
