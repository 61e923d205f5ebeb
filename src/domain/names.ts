import { badRequest } from "./errors.js";

import { MAX_NODE_RANK, relativeNameProblem } from "./name-rules.js";
import { checkpointIdOf, nameInCheckpoint } from "./checkpoint-id.js";

export { MAX_NODE_RANK, relativeNameProblem } from "./name-rules.js";

export function assertRelativeName(name: string): string {
  const problem = relativeNameProblem(name);
  if (problem) throw badRequest(problem);
  return name;
}

/** node_rank arrives as a path segment; only a plain decimal integer in range is accepted. */
export function parseNodeRank(raw: string): number {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(raw)) throw badRequest(`node_rank must be an integer from 0 to ${MAX_NODE_RANK}`);
  const rank = Number(raw);
  if (rank > MAX_NODE_RANK) throw badRequest(`node_rank must be an integer from 0 to ${MAX_NODE_RANK}`);
  return rank;
}

/**
 * The legacy object key of a file: the layout Baseten uses. Files committed before migration 15
 * live here (their row's blob key is null); nothing is written here any more, since a key fixed
 * per name cannot be replaced safely by two servers at once (see versionedBlobKey).
 */
export function blobKeyOf(projectId: string, jobId: string, nodeRank: number, relativeName: string): string {
  return `training_projects/${projectId}/jobs/${jobId}/rank-${nodeRank}/${relativeName}`;
}

export function jobBlobPrefix(projectId: string, jobId: string): string {
  return `training_projects/${projectId}/jobs/${jobId}/`;
}

/** Inverse of blobKeyOf (legacy keys only); null if the key is not of that shape. */
export function parseBlobKey(key: string): { projectId: string; jobId: string; nodeRank: number; relativeName: string } | null {
  const m = /^training_projects\/([^/]+)\/jobs\/([^/]+)\/rank-(0|[1-9][0-9]{0,4})\/(.+)$/s.exec(key);
  if (!m) return null;
  const [, projectId, jobId, rank, relativeName] = m as unknown as [string, string, string, string, string];
  if (Number(rank) > MAX_NODE_RANK || relativeNameProblem(relativeName)) return null;
  return { projectId, jobId, nodeRank: Number(rank), relativeName };
}

/** The folders a name lies in, outermost first: "a/b/c" → ["a", "a/b"]. */
export function ancestorsOf(relativeName: string): string[] {
  const out: string[] = [];
  for (let i = relativeName.indexOf("/"); i !== -1; i = relativeName.indexOf("/", i + 1)) out.push(relativeName.slice(0, i));
  return out;
}

/** The folder of a job that holds every committed version (a sibling of the legacy `rank-N/` folders). */
const VERSIONS_FOLDER = "versions";
const VERSION_ID = /^[a-z0-9]{20}$/;

/**
 * The object key of one committed version of a file. Each version gets its own key, so an
 * upload never overwrites bytes a listed row or a handed-out URL describes: the row switch in the
 * metadata store is the commit, and the version it replaced is deleted afterwards.
 *
 *   training_projects/{p}/jobs/{j}/versions/rank-{n}/ckpt/{checkpoint}/{version}/{name in checkpoint}
 *   training_projects/{p}/jobs/{j}/versions/rank-{n}/root/{version}/{name}        (root files)
 *
 * - under jobBlobPrefix, so a job purge by prefix takes every version;
 * - never a legacy key (those continue with `rank-{n}/` where these have `versions/`);
 * - never another version's key, nor a folder of one: the unique version id is a whole segment
 *   at a fixed depth (right below the checkpoint folder, or below `root/`), so two keys share a
 *   folder only below their own version segment;
 * - a checkpoint's versions of one rank share one folder, so a checkpoint delete is a prefix delete;
 * - the last segment is the file's basename, so `curl -O` and wget save under the right name.
 */
export function versionedBlobKey(projectId: string, jobId: string, nodeRank: number, relativeName: string, versionId: string): string {
  if (!VERSION_ID.test(versionId)) throw new Error("malformed version id");
  const rank = `${jobBlobPrefix(projectId, jobId)}${VERSIONS_FOLDER}/rank-${nodeRank}/`;
  const checkpointId = checkpointIdOf(relativeName);
  return checkpointId === null
    ? `${rank}root/${versionId}/${relativeName}`
    : `${rank}ckpt/${checkpointId}/${versionId}/${nameInCheckpoint(relativeName)}`;
}

/** The folder holding every version of one checkpoint's files of one rank (for checkpoint deletes). */
export function checkpointVersionsPrefix(projectId: string, jobId: string, nodeRank: number, checkpointId: string): string {
  return `${jobBlobPrefix(projectId, jobId)}${VERSIONS_FOLDER}/rank-${nodeRank}/ckpt/${checkpointId}/`;
}

/** Inverse of versionedBlobKey; null if the key is not of that shape. */
export function parseVersionedBlobKey(key: string): { projectId: string; jobId: string; nodeRank: number; relativeName: string; versionId: string } | null {
  const m = /^training_projects\/([^/]+)\/jobs\/([^/]+)\/versions\/rank-(0|[1-9][0-9]{0,4})\/(?:root\/([a-z0-9]{20})\/(.+)|ckpt\/([^/]+)\/([a-z0-9]{20})\/(.+))$/s.exec(key);
  if (!m) return null;
  const [, projectId, jobId, rank, rootVersion, rootName, checkpointId, checkpointVersion, inside] = m;
  const relativeName = rootName !== undefined ? rootName : `${checkpointId}/${inside}`;
  const versionId = (rootVersion ?? checkpointVersion)!;
  if (Number(rank) > MAX_NODE_RANK || relativeNameProblem(relativeName)) return null;
  // A root file's name has no folder; a checkpoint file's first segment is its checkpoint.
  if ((rootName !== undefined) !== (checkpointIdOf(relativeName) === null)) return null;
  return { projectId: projectId!, jobId: jobId!, nodeRank: Number(rank), relativeName, versionId };
}

/** Where a listed file's bytes are: its version's key, or the legacy key for a row from before versioning. */
export function blobKeyOfFile(projectId: string, file: { jobId: string; nodeRank: number; relativeName: string; blobKey: string | null }): string {
  return file.blobKey ?? blobKeyOf(projectId, file.jobId, file.nodeRank, file.relativeName);
}

/** Either kind of key, parsed: `legacy` says which (a legacy key is referenced by a row whose blob key is null). */
export function parseAnyBlobKey(key: string): { projectId: string; jobId: string; nodeRank: number; relativeName: string; legacy: boolean } | null {
  const versioned = parseVersionedBlobKey(key);
  if (versioned) return { projectId: versioned.projectId, jobId: versioned.jobId, nodeRank: versioned.nodeRank, relativeName: versioned.relativeName, legacy: false };
  const legacy = parseBlobKey(key);
  return legacy ? { ...legacy, legacy: true } : null;
}
