/**
 * A total parser for one HTTP Range header against a representation of `size` bytes
 * (RFC 9110 §14.1.2). Multiple ranges are answered with the whole representation (allowed by
 * the RFC, and no client of ours needs multipart/byteranges).
 */
export type RangeResult =
  | { kind: "full" }
  | { kind: "partial"; start: number; end: number }
  | { kind: "unsatisfiable" };

export function parseRangeHeader(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: "full" };
  const m = /^bytes=[ \t]*([0-9]*)-([0-9]*)[ \t]*$/i.exec(header.trim());
  if (!m) return { kind: "full" }; // unknown unit or a multi-range: ignore, as the RFC permits
  const [, first, last] = m as unknown as [string, string, string];
  if (first === "" && last === "") return { kind: "full" };
  if (first.length > 15 || last.length > 15) return { kind: "unsatisfiable" };
  if (first === "") {
    // Suffix range: the last N bytes.
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "partial", start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== "" && Number(last) < start) return { kind: "full" }; // syntactically invalid: ignore
  if (start >= size) return { kind: "unsatisfiable" };
  return { kind: "partial", start, end };
}
