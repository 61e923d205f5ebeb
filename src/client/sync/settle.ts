import type { LocalFile } from "./types.js";

/**
 * File names by which a writer says "this checkpoint folder is finished". HF Trainer writes
 * trainer_state.json last in `checkpoint-N/`; `.ckpt-complete` and `COMPLETE` are for any other
 * training code (an empty file is enough). They count only directly inside a top-level folder
 * of the synced folder, which is what the API calls a checkpoint.
 */
export const COMPLETION_MARKERS: ReadonlySet<string> = new Set(["trainer_state.json", ".ckpt-complete", "COMPLETE"]);

/** A local file as the engine tracks it between scans. */
export interface ObservedFile extends LocalFile {
  /** Local clock (ms) when its size or mtime last changed, or when it was first seen. */
  unchangedSince: number;
}

/** The top-level folder (checkpoint) a file belongs to, or null for a file at the root. */
export function checkpointFolderOf(name: string): string | null {
  const slash = name.indexOf("/");
  return slash === -1 ? null : name.slice(0, slash);
}

export function isCompletionMarker(name: string): boolean {
  const parts = name.split("/");
  return parts.length === 2 && COMPLETION_MARKERS.has(parts[1]!);
}

/** For each checkpoint folder holding a marker, the newest marker's mtime. */
export function markerTimes(files: Iterable<LocalFile>): Map<string, number> {
  const times = new Map<string, number>();
  for (const file of files) {
    if (!isCompletionMarker(file.name)) continue;
    const folder = checkpointFolderOf(file.name)!;
    times.set(folder, Math.max(times.get(folder) ?? -Infinity, file.mtimeMs));
  }
  return times;
}

/**
 * Whether a file is finished being written, so that uploading it cannot publish a partial version.
 *
 * - Settled: its size and mtime have not changed for `settleMs` (by our own clock, so a network
 *   filesystem whose clock is off cannot make a file being written look old).
 * - Marked: its checkpoint folder holds a completion marker that is not older than the file. The
 *   writer wrote the marker after the file, so the file was done; a file changed after the marker
 *   (a rewrite, or something the framework writes last) falls back to settling. The marker itself
 *   always settles: it may be caught half-written like any file.
 */
export function isComplete(file: ObservedFile, now: number, settleMs: number, markers: ReadonlyMap<string, number>): boolean {
  if (now - file.unchangedSince >= settleMs) return true;
  if (isCompletionMarker(file.name)) return false;
  const folder = checkpointFolderOf(file.name);
  const markedAt = folder === null ? undefined : markers.get(folder);
  return markedAt !== undefined && file.mtimeMs <= markedAt;
}
