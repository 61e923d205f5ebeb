import type { LocalFile } from "./types.js";

import { checkpointIdOf } from "../../domain/checkpoint-id.js";
import { COMPLETION_MARKERS, isCompletionMarker } from "../../domain/checkpoint-markers.js";

/** The server's list (domain/checkpoint-markers.ts): the same markers complete a checkpoint there. */
export { COMPLETION_MARKERS, isCompletionMarker };

/** A local file as the engine tracks it between scans. */
export interface ObservedFile extends LocalFile {
  /** Local clock (ms) when its size or mtime last changed, or when it was first seen. */
  unchangedSince: number;
}


/** For each checkpoint folder holding a marker, the newest marker's mtime. */
export function markerTimes(files: Iterable<LocalFile>): Map<string, number> {
  const times = new Map<string, number>();
  for (const file of files) {
    if (!isCompletionMarker(file.name)) continue;
    const folder = checkpointIdOf(file.name)!;
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
  const folder = checkpointIdOf(file.name);
  const markedAt = folder === null ? undefined : markers.get(folder);
  return markedAt !== undefined && file.mtimeMs <= markedAt;
}
