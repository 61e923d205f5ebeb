import type { CheckpointInspection } from "./inspect-checkpoint.js";

export interface TensorRef {
  node_rank: number;
  name: string;
  dtype: string;
  shape: number[];
}

export interface TensorChange {
  node_rank: number;
  name: string;
  from: { dtype: string; shape: number[] };
  to: { dtype: string; shape: number[] };
  /** "reshaped", "retyped", or both. */
  changes: ("reshaped" | "retyped")[];
}

export interface FileChange {
  node_rank: number;
  /** The file's name inside its checkpoint (without the checkpoint folder), so checkpoint-3000 and checkpoint-4000 line up. */
  path: string;
  change: "added" | "removed" | "sha256" | "size";
}

export interface CheckpointDiff {
  identical: boolean;
  added: TensorRef[];
  removed: TensorRef[];
  changed: TensorChange[];
  files: FileChange[];
  /** Files present on both sides whose digest one side did not give (compared by size only). */
  files_without_digest: number;
}

const tensorKey = (rank: number, name: string) => `${rank}\u0000${name}`;

/** The path of a file within its checkpoint: "checkpoint-100/model.safetensors" → "model.safetensors". */
function pathInCheckpoint(checkpointId: string, relativeName: string): string {
  return checkpointId === "." ? relativeName : relativeName.slice(checkpointId.length + 1);
}

/**
 * What changed from `a` to `b`: tensors (by rank and name) added, removed, reshaped or retyped, and
 * files (by rank and path inside the checkpoint) added, removed or with other bytes.
 */
export function diffCheckpoints(a: CheckpointInspection, b: CheckpointInspection): CheckpointDiff {
  const tensorsOf = (side: CheckpointInspection) => {
    const map = new Map<string, TensorRef>();
    for (const file of side.files) for (const t of file.tensors) map.set(tensorKey(file.node_rank, t.name), { node_rank: file.node_rank, name: t.name, dtype: t.dtype, shape: t.shape });
    return map;
  };
  const before = tensorsOf(a);
  const after = tensorsOf(b);
  const added = [...after].filter(([k]) => !before.has(k)).map(([, t]) => t);
  const removed = [...before].filter(([k]) => !after.has(k)).map(([, t]) => t);
  const changed: TensorChange[] = [];
  for (const [k, from] of before) {
    const to = after.get(k);
    if (!to) continue;
    const changes: TensorChange["changes"] = [];
    if (from.shape.length !== to.shape.length || from.shape.some((d, i) => d !== to.shape[i])) changes.push("reshaped");
    if (from.dtype !== to.dtype) changes.push("retyped");
    if (changes.length) changed.push({ node_rank: from.node_rank, name: from.name, from: { dtype: from.dtype, shape: from.shape }, to: { dtype: to.dtype, shape: to.shape }, changes });
  }

  const filesOf = (side: CheckpointInspection) => new Map(side.files.map((f) => [`${f.node_rank}\u0000${pathInCheckpoint(side.checkpoint_id, f.relative_file_name)}`, f]));
  const fa = filesOf(a);
  const fb = filesOf(b);
  const files: FileChange[] = [];
  let withoutDigest = 0;
  for (const [key, f] of fa) {
    const path = key.slice(key.indexOf("\u0000") + 1);
    const g = fb.get(key);
    if (!g) files.push({ node_rank: f.node_rank, path, change: "removed" });
    else if (f.sha256 && g.sha256) {
      if (f.sha256 !== g.sha256) files.push({ node_rank: f.node_rank, path, change: "sha256" });
    } else {
      withoutDigest++;
      if (f.size_bytes !== g.size_bytes) files.push({ node_rank: f.node_rank, path, change: "size" });
    }
  }
  for (const [key, g] of fb) if (!fa.has(key)) files.push({ node_rank: g.node_rank, path: key.slice(key.indexOf("\u0000") + 1), change: "added" });
  files.sort((x, y) => x.node_rank - y.node_rank || (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  const identical = added.length === 0 && removed.length === 0 && changed.length === 0 && files.length === 0;
  return { identical, added, removed, changed, files, files_without_digest: withoutDigest };
}
