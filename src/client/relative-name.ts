/**
 * Client-side check of a listed file's name before it becomes a local path. The server
 * enforces the same rules on upload, but a download must not trust the listing: it may come
 * from another server, a proxy, or a bug. Nothing is normalised: a name that is not already
 * in canonical form is refused.
 */
export function unsafeRelativeNameReason(name: unknown): string | null {
  if (typeof name !== "string") return "relative_file_name is not a string";
  if (name.length === 0) return "relative_file_name is empty";
  if (Buffer.byteLength(name, "utf8") > 1024) return "relative_file_name is longer than 1024 bytes";
  if (name.startsWith("/")) return "relative_file_name is an absolute path";
  if (name.includes("\\")) return "relative_file_name contains a backslash";
  if (/^[A-Za-z]:/.test(name)) return "relative_file_name starts with a drive letter";
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return "relative_file_name contains control characters";
  for (const segment of name.split("/")) {
    if (segment === "") return "relative_file_name contains an empty path segment";
    if (segment === "." || segment === "..") return "relative_file_name contains a '.' or '..' segment";
  }
  return null;
}

/** A node_rank as the API defines it: a small non-negative integer. */
export function isValidNodeRank(rank: unknown): rank is number {
  return typeof rank === "number" && Number.isInteger(rank) && rank >= 0 && rank <= 65535;
}
