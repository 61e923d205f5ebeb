import { relativeNameProblem } from "../domain/name-rules.js";

/**
 * Client-side check of a listed file's name before it becomes a local path. The server
 * enforces the same rules on upload (one rule, domain/name-rules.ts), but a download must not
 * trust the listing: it may come from another server, a proxy, or a bug. Nothing is
 * normalised: a name that is not already in canonical form is refused.
 */
export function unsafeRelativeNameReason(name: unknown): string | null {
  if (typeof name !== "string") return "relative_file_name is not a string";
  return relativeNameProblem(name);
}

export { isValidNodeRank } from "../domain/name-rules.js";
