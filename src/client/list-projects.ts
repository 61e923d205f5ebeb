import { clientFor, type Connection } from "./connection.js";
import type { TrainingProject } from "./types.js";

/** The caller's training projects. */
export async function* listProjects(params: Connection & { signal?: AbortSignal }): AsyncGenerator<TrainingProject> {
  yield* await clientFor(params).listProjects(params.signal);
}
