/**
 * The safetensors header: an 8-byte little-endian length N, then N bytes of UTF-8 JSON mapping
 * tensor names to `{dtype, shape, data_offsets}` (plus an optional `__metadata__` map of strings),
 * then the tensors' bytes. This parser is total: any input yields either a header or a reason, and
 * it never allocates more than the header it was handed. It has no dependencies, so the server
 * (indexing at commit) and the client (reading headers through Range requests) share it.
 */

/** Bits per element of every dtype the format defines (huggingface/safetensors `Dtype::bitsize`). */
export const SAFETENSORS_DTYPE_BITS: Readonly<Record<string, number>> = Object.freeze({
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
});

/** The format's own cap on the header's declared length (safetensors' MAX_HEADER_SIZE). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;
/** The 8-byte length prefix. */
export const SAFETENSORS_PREFIX_BYTES = 8;

export interface SafetensorsTensor {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte range [start, end) within the data section, which begins at byte 8 + header length. */
  dataOffsets: [number, number];
  /** Number of elements (the product of the shape). */
  parameters: number;
}

export interface SafetensorsHeader {
  /** The declared header length N (the data section starts at 8 + N). */
  headerBytes: number;
  metadata: Record<string, string> | null;
  /** In file order (by data offset). */
  tensors: SafetensorsTensor[];
  parameterCount: number;
  bytesByDtype: Record<string, number>;
}

export type SafetensorsParse = { ok: true; header: SafetensorsHeader } | { ok: false; error: string };

/**
 * The declared header length from the first 8 bytes, or null when fewer are given. Values beyond
 * Number.MAX_SAFE_INTEGER come back as Infinity (they are refused by every check that follows).
 */
function declaredHeaderLength(prefix: Uint8Array): number | null {
  if (prefix.length < SAFETENSORS_PREFIX_BYTES) return null;
  const view = new DataView(prefix.buffer, prefix.byteOffset, SAFETENSORS_PREFIX_BYTES);
  const n = view.getBigUint64(0, true);
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(n);
}

/**
 * Why a declared length cannot be read as a header of a file of `fileSize` bytes, or null when it
 * can. `limitBytes` is the reader's own cap (at most the format's).
 */
function headerLengthProblem(declared: number, fileSize: number, limitBytes = SAFETENSORS_MAX_HEADER_BYTES): string | null {
  if (declared > SAFETENSORS_MAX_HEADER_BYTES)
    return `declared header length ${declared} is above the format's cap of ${SAFETENSORS_MAX_HEADER_BYTES} bytes`;
  if (SAFETENSORS_PREFIX_BYTES + declared > fileSize)
    return `declared header length ${declared} runs past the end of the file (${fileSize} bytes)`;
  if (declared > limitBytes) return `header of ${declared} bytes is above ckpt's indexing limit of ${limitBytes} bytes`;
  if (declared < 2) return `declared header length ${declared} is too short for a JSON object`;
  return null;
}

/**
 * How many bytes from the start of the file a reader needs to parse the header, given the bytes it
 * has so far: 8 until the length is known, then 8 + N (or 8 when N is unacceptable: no point
 * reading a header that will be refused).
 */
export function headerBytesWanted(prefix: Uint8Array, fileSize: number, limitBytes = SAFETENSORS_MAX_HEADER_BYTES): number {
  const declared = declaredHeaderLength(prefix);
  if (declared === null) return SAFETENSORS_PREFIX_BYTES;
  if (headerLengthProblem(declared, fileSize, limitBytes) !== null) return SAFETENSORS_PREFIX_BYTES;
  return SAFETENSORS_PREFIX_BYTES + declared;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses and validates the header of a file of `fileSize` bytes from its first bytes (at least
 * headerBytesWanted of them; more are ignored). Checks what the format's reference reader checks:
 * length within the cap and the file, UTF-8 JSON object, known dtypes, shapes that match their byte
 * ranges, ranges that tile the data section exactly (no overlap, no gap, nothing past the end, no
 * trailing bytes), and one entry per name.
 */
export function parseSafetensorsHeader(prefix: Uint8Array, fileSize: number, limitBytes = SAFETENSORS_MAX_HEADER_BYTES): SafetensorsParse {
  const fail = (error: string): SafetensorsParse => ({ ok: false, error });
  if (fileSize < SAFETENSORS_PREFIX_BYTES) return fail(`file of ${fileSize} bytes is shorter than the 8-byte header length`);
  const declared = declaredHeaderLength(prefix);
  if (declared === null) return fail("fewer than 8 bytes were read");
  const lengthProblem = headerLengthProblem(declared, fileSize, limitBytes);
  if (lengthProblem) return fail(lengthProblem);
  if (prefix.length < SAFETENSORS_PREFIX_BYTES + declared) return fail(`only ${prefix.length} of the header's ${SAFETENSORS_PREFIX_BYTES + declared} bytes were read`);

  let text: string;
  try {
    text = utf8.decode(prefix.subarray(SAFETENSORS_PREFIX_BYTES, SAFETENSORS_PREFIX_BYTES + declared));
  } catch {
    return fail("header is not valid UTF-8");
  }
  if (!text.startsWith("{")) return fail("header does not start with '{'");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return fail(`header is not valid JSON (${(err as Error).message})`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return fail("header is not a JSON object");
  const duplicate = firstDuplicateTopLevelKey(text);
  if (duplicate !== null) return fail(`duplicate entry '${clip(duplicate)}' in the header`);

  const entries = parsed as Record<string, unknown>;
  let metadata: Record<string, string> | null = null;
  const tensors: SafetensorsTensor[] = [];
  for (const name of Object.keys(entries)) {
    const value = entries[name];
    if (name === "__metadata__") {
      if (value === null || typeof value !== "object" || Array.isArray(value)) return fail("__metadata__ is not an object");
      for (const v of Object.values(value)) if (typeof v !== "string") return fail("__metadata__ values must be strings");
      metadata = { ...(value as Record<string, string>) };
      continue;
    }
    const tensor = readTensorEntry(name, value);
    if (typeof tensor === "string") return fail(tensor);
    tensors.push(tensor);
  }

  tensors.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  const dataBytes = fileSize - SAFETENSORS_PREFIX_BYTES - declared;
  let covered = 0;
  let previous: SafetensorsTensor | null = null;
  for (const t of tensors) {
    const [start, end] = t.dataOffsets;
    if (end > dataBytes) return fail(`tensor '${clip(t.name)}' ends at byte ${end}, past the end of the data (${dataBytes} bytes)`);
    if (start < covered) return fail(`tensors '${clip(previous!.name)}' and '${clip(t.name)}' overlap`);
    if (start > covered) return fail(`gap of ${start - covered} bytes before tensor '${clip(t.name)}'`);
    covered = end;
    previous = t;
  }
  if (covered !== dataBytes) return fail(`${dataBytes - covered} bytes after the last tensor belong to none`);

  let parameterCount = 0;
  const bytesByDtype: Record<string, number> = {};
  for (const t of tensors) {
    parameterCount += t.parameters;
    bytesByDtype[t.dtype] = (bytesByDtype[t.dtype] ?? 0) + (t.dataOffsets[1] - t.dataOffsets[0]);
  }
  return { ok: true, header: { headerBytes: declared, metadata, tensors, parameterCount, bytesByDtype } };
}

/** One tensor's entry, or why it is malformed. */
function readTensorEntry(name: string, value: unknown): SafetensorsTensor | string {
  const where = `tensor '${clip(name)}'`;
  if (value === null || typeof value !== "object" || Array.isArray(value)) return `${where} is not an object`;
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== "string") return `${where} has no dtype`;
  const bits = Object.hasOwn(SAFETENSORS_DTYPE_BITS, dtype) ? SAFETENSORS_DTYPE_BITS[dtype]! : undefined;
  if (bits === undefined) return `${where} has unknown dtype '${clip(dtype)}'`;
  if (!Array.isArray(shape) || !shape.every(isSize)) return `${where}: shape must be an array of non-negative integers`;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSize)) return `${where}: data_offsets must be two non-negative integers`;
  const [start, end] = offsets as [number, number];
  if (end < start) return `${where}: data_offsets end before they start`;
  let elements = 1;
  for (const dim of shape as number[]) {
    elements *= dim;
    if (!Number.isSafeInteger(elements)) return `${where}: shape [${shape.join(", ")}] is too large`;
  }
  const totalBits = elements * bits;
  if (!Number.isSafeInteger(totalBits)) return `${where}: shape [${shape.join(", ")}] is too large`;
  if (totalBits % 8 !== 0) return `${where}: ${elements} elements of ${dtype} (${bits} bits) are not a whole number of bytes`;
  if (end - start !== totalBits / 8)
    return `${where}: shape [${shape.join(", ")}] of ${dtype} is ${totalBits / 8} bytes but data_offsets span ${end - start}`;
  return { name, dtype, shape: [...(shape as number[])], dataOffsets: [start, end], parameters: elements };
}

const isSize = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** Names in messages are clipped: a hostile header may carry megabyte-long keys. */
function clip(s: string): string {
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/**
 * The first key that appears twice in the top-level object of `text` (already known to be valid
 * JSON), or null. JSON.parse keeps the last of duplicates silently; the format forbids them.
 */
export function firstDuplicateTopLevelKey(text: string): string | null {
  const seen = new Set<string>();
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const startAt = i;
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
      if (depth === 1 && expectKey) {
        const key = JSON.parse(text.slice(startAt, i + 1)) as string;
        if (seen.has(key)) return key;
        seen.add(key);
        expectKey = false;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
      if (depth === 1) expectKey = true;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */ && depth === 1) {
      expectKey = true;
    }
  }
  return null;
}

/** Builds a valid safetensors file (header and zeroed data): for tests, benches and tools. */
export function buildSafetensors(
  tensors: { name: string; dtype: string; shape: number[] }[],
  metadata?: Record<string, string>,
): { header: Buffer; dataBytes: number } {
  // No prototype: a tensor may be named "__proto__" (found by the fuzz test).
  const entries: Record<string, unknown> = Object.create(null);
  if (metadata) entries.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bits = SAFETENSORS_DTYPE_BITS[t.dtype] ?? 8;
    const bytes = Math.ceil((t.shape.reduce((a, b) => a * b, 1) * bits) / 8);
    entries[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(entries);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const body = Buffer.from(json);
  const header = Buffer.alloc(8 + body.length);
  header.writeBigUInt64LE(BigInt(body.length), 0);
  body.copy(header, 8);
  return { header, dataBytes: offset };
}
