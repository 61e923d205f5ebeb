import { badRequest } from "./errors.js";

export const MAX_RELATIVE_NAME_BYTES = 1024;
export const MAX_NODE_RANK = 65535;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Why a relative_file_name is unacceptable, or null when it is fine. Names become object keys
 * and local paths, so anything that could escape a job's folder or be read two ways is refused
 * outright rather than normalised: `a//b`, `./a` and `a/../b` are errors, not aliases.
 */
export function relativeNameProblem(name: string): string | null {
  if (name.length === 0) return "relative_file_name must not be empty";
  if (Buffer.byteLength(name, "utf8") > MAX_RELATIVE_NAME_BYTES)
    return `relative_file_name must be at most ${MAX_RELATIVE_NAME_BYTES} bytes`;
  if (name.startsWith("/")) return "relative_file_name must not start with '/'";
  if (name.includes("\\")) return "relative_file_name must not contain a backslash";
  // C0 controls, DEL and C1 controls: invisible in listings and hostile in terminals.
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return "relative_file_name must not contain control characters";
  if (LONE_SURROGATE.test(name)) return "relative_file_name must be valid UTF-8";
  for (const segment of name.split("/")) {
    if (segment === "") return "relative_file_name must not contain an empty path segment";
    if (segment === "." || segment === "..") return "relative_file_name must not contain '.' or '..' segments";
  }
  return null;
}

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

/** Object key of a file: the layout Baseten uses, so operators find files with any S3 tool. */
export function blobKeyOf(projectId: string, jobId: string, nodeRank: number, relativeName: string): string {
  return `training_projects/${projectId}/jobs/${jobId}/rank-${nodeRank}/${relativeName}`;
}

export function jobBlobPrefix(projectId: string, jobId: string): string {
  return `training_projects/${projectId}/jobs/${jobId}/`;
}

/** Inverse of blobKeyOf, for the presigned download route; null if the key is not of that shape. */
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
