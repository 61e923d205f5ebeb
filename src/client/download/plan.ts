import { isAbsolute, join, relative, resolve } from "node:path";
import { createRequire } from "node:module";
import { isValidNodeRank, unsafeRelativeNameReason } from "../relative-name.js";
import { MAX_NODE_RANK } from "../../domain/name-rules.js";
import type { CheckpointFile } from "../types.js";
import type { FileRef } from "./types.js";
import { checkpointIdOf } from "../../domain/checkpoint-id.js";

/** Folder inside dest holding partial files and their resume journals. */
export const STATE_DIR_NAME = ".ckpt-download";

export interface PlannedFile extends FileRef {
  /** Identity within the job: `<node_rank>/<relative_file_name>`. */
  key: string;
  /** Absolute path of the finished file. */
  localPath: string;
  /** The listing's last_modified: with size, what identifies the remote version. */
  lastModified: string;
}

export interface DownloadPlan {
  files: PlannedFile[];
  /** Selected files whose name or rank cannot safely become a local path. */
  refused: { file: FileRef; reason: string }[];
}

export interface PlanSelection {
  /** Resolved checkpoint id (never "latest" here). */
  checkpointId?: string;
  include?: string[];
  nodeRanks?: number[];
  flat?: boolean;
}

export function fileKey(file: Pick<CheckpointFile, "node_rank" | "relative_file_name">): string {
  return `${file.node_rank}/${file.relative_file_name}`;
}

/** A predicate for the selection (rank, checkpoint, globs) that looks at nothing but the listing. */
export function fileSelector(selection: PlanSelection): (file: CheckpointFile) => boolean {
  const ranks = selection.nodeRanks?.length ? new Set(selection.nodeRanks) : null;
  const matches = selection.include?.length ? globMatcher(selection.include) : null;
  return (file) =>
    (ranks === null || ranks.has(file.node_rank)) &&
    (selection.checkpointId === undefined || checkpointIdOf(String(file.relative_file_name)) === selection.checkpointId) &&
    (matches === null || matches(String(file.relative_file_name)));
}

/**
 * A name matcher for globs, where a glob without '/' ("*.json") matches a file at any depth by
 * its base name, and a glob with one ("checkpoint-100/**") matches the whole relative name.
 * (picomatch's own `basename` option also applies to globs with slashes, and then fails them.)
 */
function globMatcher(globs: string[]): (name: string) => boolean {
  const picomatch = loadPicomatch();
  const onBase = globs.filter((g) => !g.includes("/"));
  const onPath = globs.filter((g) => g.includes("/"));
  const baseMatches = onBase.length ? picomatch(onBase, { dot: true }) : () => false;
  const pathMatches = onPath.length ? picomatch(onPath, { dot: true }) : () => false;
  return (name) => pathMatches(name) || baseMatches(name.slice(name.lastIndexOf("/") + 1));
}

/**
 * Which listed files to download and where each one goes. Files are matched against the
 * selection first; a selected file whose rank or name could escape `dest` is refused, not
 * rewritten. A file listed twice (pages shifting under a concurrent upload) is taken once.
 */
export function planDownload(listing: Iterable<CheckpointFile>, selection: PlanSelection, dest: string): DownloadPlan {
  const root = resolve(dest);
  const selected = fileSelector(selection);
  const plan: DownloadPlan = { files: [], refused: [] };
  const seen = new Set<string>();
  const ranks = new Set<number>();
  for (const file of listing) {
    if (!selected(file)) continue;
    const key = fileKey(file);
    if (seen.has(key)) continue;
    seen.add(key);
    const localName = selection.flat ? String(file.relative_file_name) : `rank-${file.node_rank}/${file.relative_file_name}`;
    const ref: FileRef = { nodeRank: file.node_rank, relativeFileName: file.relative_file_name, sizeBytes: file.size_bytes, localName };
    const reason = refusalReason(file, root, localName, selection.flat === true);
    if (reason) {
      plan.refused.push({ file: ref, reason });
      continue;
    }
    ranks.add(file.node_rank);
    plan.files.push({ ...ref, key, localPath: join(root, localName), lastModified: file.last_modified });
  }
  if (selection.flat && ranks.size > 1)
    throw new RangeError(`flat layout needs a single node rank, but the selection has ranks ${[...ranks].sort((a, b) => a - b).join(", ")}: select one with a rank filter`);
  return plan;
}

function refusalReason(file: CheckpointFile, root: string, localName: string, flat: boolean): string | null {
  if (!isValidNodeRank(file.node_rank)) return `node_rank ${JSON.stringify(file.node_rank)} is not an integer from 0 to ${MAX_NODE_RANK}`;
  if (!Number.isSafeInteger(file.size_bytes) || file.size_bytes < 0) return `size_bytes ${JSON.stringify(file.size_bytes)} is not a byte count`;
  if (typeof file.url !== "string") return "the listing gives no URL";
  const nameProblem = unsafeRelativeNameReason(file.relative_file_name);
  if (nameProblem) return nameProblem;
  if (flat && (file.relative_file_name === STATE_DIR_NAME || checkpointIdOf(file.relative_file_name) === STATE_DIR_NAME)) return `${STATE_DIR_NAME} is reserved for partial downloads`;
  // A second wall: whatever the checks above missed, the joined path must stay under dest.
  const rel = relative(root, join(root, localName));
  if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) return "the path would leave the destination folder";
  return null;
}

/**
 * picomatch is required when a glob is given, not imported with this module: listings and
 * downloads without --include/--exclude (most calls) skip loading it (BENCHMARKS.md, start-up).
 */
function loadPicomatch(): typeof import("picomatch") {
  return createRequire(import.meta.url)("picomatch") as typeof import("picomatch");
}
