/**
 * The one home of the file-name and node-rank rules, shared by the server (which refuses such
 * uploads) and the SDK (which refuses to turn such a listed name into a local path). It imports
 * nothing, so the SDK may load it without anything of the server.
 */

const MAX_RELATIVE_NAME_BYTES = 1024;
export const MAX_NODE_RANK = 65535;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Why a relative_file_name is unacceptable, or null when it is fine. Names become object keys
 * and local paths, so anything that could escape a job's folder or be read two ways is refused
 * outright rather than normalised: `a//b`, `./a` and `a/../b` are errors, not aliases. A name
 * accepted here is downloadable by the SDK on any OS it runs on (no drive letter, no backslash).
 */
export function relativeNameProblem(name: string): string | null {
  if (name.length === 0) return "relative_file_name must not be empty";
  if (Buffer.byteLength(name, "utf8") > MAX_RELATIVE_NAME_BYTES)
    return `relative_file_name must be at most ${MAX_RELATIVE_NAME_BYTES} bytes`;
  if (name.startsWith("/")) return "relative_file_name must not start with '/'";
  if (name.includes("\\")) return "relative_file_name must not contain a backslash";
  // `C:x` is a path relative to drive C's current folder on Windows: it would escape the download folder.
  if (/^[A-Za-z]:/.test(name)) return "relative_file_name must not start with a drive letter";
  // C0 controls, DEL and C1 controls: invisible in listings and hostile in terminals.
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return "relative_file_name must not contain control characters";
  if (LONE_SURROGATE.test(name)) return "relative_file_name must be valid UTF-8";
  for (const segment of name.split("/")) {
    if (segment === "") return "relative_file_name must not contain an empty path segment";
    if (segment === "." || segment === "..") return "relative_file_name must not contain '.' or '..' segments";
  }
  return null;
}

/** A node_rank as the API defines it: an integer from 0 to MAX_NODE_RANK. */
export function isValidNodeRank(rank: unknown): rank is number {
  return typeof rank === "number" && Number.isInteger(rank) && rank >= 0 && rank <= MAX_NODE_RANK;
}
