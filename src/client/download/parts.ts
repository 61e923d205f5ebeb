/** A byte range of a file, `end` inclusive (as in an HTTP Range header). */
export interface Part {
  index: number;
  start: number;
  end: number;
}

/** Fixed-size parts covering `size` bytes; the last one may be shorter. An empty file has none. */
export function splitIntoParts(size: number, partSize: number): Part[] {
  const parts: Part[] = [];
  for (let start = 0, index = 0; start < size; start += partSize, index++)
    parts.push({ index, start, end: Math.min(start + partSize, size) - 1 });
  return parts;
}

export function partLength(part: Part): number {
  return part.end - part.start + 1;
}
