import type { Readable } from "node:stream";
import { ADAPTER_CONFIG_MAX_BYTES, parseAdapterConfig, type PeftAdapterConfig } from "../formats/peft-adapter-config.js";
import {
  SAFETENSORS_PREFIX_BYTES,
  headerBytesWanted,
  parseSafetensorsHeader,
  type SafetensorsHeader,
} from "../formats/safetensors.js";
import { SAFETENSORS_INDEX_MAX_BYTES, parseSafetensorsIndex, type SafetensorsIndex } from "../formats/safetensors-index.js";
import { formatOfFileName } from "../formats/checkpoint-tensors.js";

/**
 * File facts: what a file's own bytes say about it (a safetensors header, a PEFT adapter config,
 * a sharded model's index), read once when the file is committed and stored with it. One
 * mechanism for every format: an extractor, chosen by the file's name, states how many bytes from
 * the file's start it needs; a PrefixCollector gathers them, either from an upload's bytes as they
 * pass (the blob store's `observe` hook: no second read) or from one ranged read of the stored blob (readFactsFrom).
 * Only that prefix is ever held in memory, and it is capped per format.
 */

/**
 * ckpt's cap on a safetensors header it indexes (the format allows 100 MB). Real headers are tens
 * to hundreds of KiB even for 100k-tensor models; this bounds what one upload can make us hold.
 */
export const INDEXED_HEADER_MAX_BYTES = 16 << 20;

export type FileFacts =
  | { format: "safetensors"; error: string | null; header: SafetensorsHeader | null }
  | { format: "peft_adapter_config"; error: string | null; adapter: PeftAdapterConfig | null }
  | { format: "safetensors_index"; error: string | null; index: SafetensorsIndex | null };
export type FileFormat = FileFacts["format"];

export interface FactsExtractor {
  readonly format: FileFormat;
  /** Most bytes from the file's start it can ever want (the ranged read asks for no more). */
  readonly maxPrefixBytes: number;
  /** Bytes from the start it needs, given those it has; `fileSize` may be unknown (Infinity). */
  bytesWanted(prefix: Buffer, fileSize: number): number;
  /** The facts, from at least bytesWanted bytes (fewer when the file is shorter). Never throws. */
  decode(prefix: Buffer, fileSize: number): FileFacts;
}

const safetensorsExtractor: FactsExtractor = {
  format: "safetensors",
  maxPrefixBytes: SAFETENSORS_PREFIX_BYTES + INDEXED_HEADER_MAX_BYTES,
  bytesWanted: (prefix, fileSize) => headerBytesWanted(prefix, fileSize, INDEXED_HEADER_MAX_BYTES),
  decode(prefix, fileSize) {
    const parsed = parseSafetensorsHeader(prefix, fileSize, INDEXED_HEADER_MAX_BYTES);
    return parsed.ok ? { format: "safetensors", error: null, header: parsed.header } : { format: "safetensors", error: parsed.error, header: null };
  },
};

/** A whole small JSON file: all of it, up to one byte past its cap (to know it is too large). */
function wholeJsonFile(cap: number): Pick<FactsExtractor, "maxPrefixBytes" | "bytesWanted"> {
  return { maxPrefixBytes: cap + 1, bytesWanted: (_prefix, fileSize) => Math.min(fileSize, cap + 1) };
}

const adapterConfigExtractor: FactsExtractor = {
  format: "peft_adapter_config",
  ...wholeJsonFile(ADAPTER_CONFIG_MAX_BYTES),
  decode(prefix, fileSize) {
    const parsed = parseAdapterConfig(prefix, fileSize);
    return parsed.ok
      ? { format: "peft_adapter_config", error: null, adapter: parsed.adapter }
      : { format: "peft_adapter_config", error: parsed.error, adapter: null };
  },
};

const safetensorsIndexExtractor: FactsExtractor = {
  format: "safetensors_index",
  ...wholeJsonFile(SAFETENSORS_INDEX_MAX_BYTES),
  decode(prefix, fileSize) {
    const parsed = parseSafetensorsIndex(prefix, fileSize);
    return parsed.ok ? { format: "safetensors_index", error: null, index: parsed.index } : { format: "safetensors_index", error: parsed.error, index: null };
  },
};

/** The extractor for a file name, or null: most files (optimizer states, logs) have none. */
export function extractorFor(relativeName: string): FactsExtractor | null {
  const format = formatOfFileName(relativeName);
  return format === null ? null : EXTRACTORS[format];
}

const EXTRACTORS: Record<FileFormat, FactsExtractor> = {
  safetensors: safetensorsExtractor,
  safetensors_index: safetensorsIndexExtractor,
  peft_adapter_config: adapterConfigExtractor,
};

/** Facts that could not be read at all (the stored blob unreadable): still a file, with a reason. */
function unreadableFacts(format: FileFormat, reason: string): FileFacts {
  if (format === "safetensors") return { format, error: reason, header: null };
  if (format === "peft_adapter_config") return { format, error: reason, adapter: null };
  return { format, error: reason, index: null };
}

/** Gathers the prefix an extractor wants from chunks of the file, in order; copies only that prefix. */
export class PrefixCollector {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private wanted: number;
  private satisfied = false;

  /** `sizeHint`: the file's size when known (Content-Length), which lets a reader stop sooner. */
  constructor(
    readonly extractor: FactsExtractor,
    private readonly sizeHint = Infinity,
  ) {
    this.wanted = Math.min(extractor.maxPrefixBytes, extractor.bytesWanted(Buffer.alloc(0), sizeHint));
    if (this.wanted <= 0) this.satisfied = true;
  }

  /** Takes what it needs of the next chunk; false once it needs nothing more. */
  offer(chunk: Buffer): boolean {
    while (!this.satisfied && chunk.length > 0) {
      const take = Math.min(chunk.length, this.wanted - this.length);
      this.chunks.push(Buffer.from(chunk.subarray(0, take)));
      this.length += take;
      chunk = chunk.subarray(take);
      if (this.length < this.wanted) break;
      const next = Math.min(this.extractor.maxPrefixBytes, this.extractor.bytesWanted(this.prefix(), this.sizeHint));
      if (next <= this.length) this.satisfied = true;
      else this.wanted = next;
    }
    return !this.satisfied;
  }

  private prefix(): Buffer {
    if (this.chunks.length > 1) this.chunks.splice(0, this.chunks.length, Buffer.concat(this.chunks));
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** The facts of a file of `fileSize` bytes whose start passed through offer(). */
  facts(fileSize: number): FileFacts {
    try {
      return this.extractor.decode(this.prefix(), fileSize);
    } catch (err) {
      return unreadableFacts(this.extractor.format, `could not be read: ${(err as Error).message}`);
    }
  }
}

/**
 * Facts of a stored file, from one ranged read of its start (direct uploads, imports): the read
 * stops as soon as the extractor has what it needs.
 */
export async function readFactsFrom(
  open: (range: { start: number; end: number }) => Promise<Readable>,
  extractor: FactsExtractor,
  sizeBytes: number,
): Promise<FileFacts> {
  const collector = new PrefixCollector(extractor, sizeBytes);
  if (sizeBytes === 0) return collector.facts(0);
  try {
    const stream = await open({ start: 0, end: Math.min(sizeBytes, extractor.maxPrefixBytes) - 1 });
    try {
      for await (const chunk of stream) if (!collector.offer(chunk as Buffer)) break;
    } finally {
      stream.destroy();
    }
  } catch (err) {
    return unreadableFacts(extractor.format, `the file's start could not be read: ${(err as Error).message}`);
  }
  return collector.facts(sizeBytes);
}

/** Tensor names of the layers LoRA adds, as PEFT names them. */
const LORA_TENSOR = /\.lora_(A|B|embedding_A|embedding_B|magnitude_vector)(\.|$)/;

/** The stored form: small columns the listings read, and the detail the tensors route pages. */
export interface StoredFacts {
  format: FileFormat;
  error: string | null;
  /** Elements over all tensors (safetensors without error only). */
  parameterCount: number | null;
  tensorCount: number;
  /** Small JSON (bytes per dtype, an adapter config): read by the checkpoints listing. */
  summary: string;
  /** Large JSON (tensors, a weight map): read only by inspection. */
  detail: string | null;
}

export interface SafetensorsSummary {
  bytes_by_dtype: Record<string, number>;
  header_bytes: number;
  /** Tensors named like LoRA's (a PEFT adapter saved without its adapter_config.json). */
  lora_tensors: boolean;
}
export interface AdapterConfigSummary {
  base_model: string | null;
  peft_type: string | null;
  config: Record<string, unknown>;
}
export interface IndexSummary {
  metadata: Record<string, unknown> | null;
}
export interface StoredTensor {
  name: string;
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
export interface SafetensorsDetail {
  metadata: Record<string, string> | null;
  tensors: StoredTensor[];
}
export interface IndexDetail {
  weight_map: Record<string, string>;
}

/**
 * A reason quotes the file (a tensor name, a JSON parser's excerpt): control characters are
 * escaped, since PostgreSQL text refuses NUL and a terminal should not obey them.
 */
function storableReason(reason: string | null): string | null {
  return reason && reason.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

export function storeFacts(facts: FileFacts): StoredFacts {
  const base = { format: facts.format, error: storableReason(facts.error) };
  if (facts.format === "safetensors") {
    const h = facts.header;
    if (!h) return { ...base, parameterCount: null, tensorCount: 0, summary: "{}", detail: null };
    const summary: SafetensorsSummary = { bytes_by_dtype: h.bytesByDtype, header_bytes: h.headerBytes, lora_tensors: h.tensors.some((t) => LORA_TENSOR.test(t.name)) };
    const detail: SafetensorsDetail = {
      metadata: h.metadata,
      tensors: h.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data_offsets: t.dataOffsets })),
    };
    return { ...base, parameterCount: h.parameterCount, tensorCount: h.tensors.length, summary: JSON.stringify(summary), detail: JSON.stringify(detail) };
  }
  if (facts.format === "peft_adapter_config") {
    const a = facts.adapter;
    const summary: AdapterConfigSummary | Record<string, never> = a ? { base_model: a.baseModel, peft_type: a.peftType, config: a.config } : {};
    return { ...base, parameterCount: null, tensorCount: 0, summary: JSON.stringify(summary), detail: null };
  }
  const i = facts.index;
  const summary: IndexSummary = { metadata: i?.metadata ?? null };
  const detail: IndexDetail | null = i ? { weight_map: i.weightMap } : null;
  return { ...base, parameterCount: null, tensorCount: i ? Object.keys(i.weightMap).length : 0, summary: JSON.stringify(summary), detail: detail && JSON.stringify(detail) };
}

/** A file's stored facts as the stores return them (detail left out: read it with factsDetail). */
export interface FileFactsRecord {
  nodeRank: number;
  relativeName: string;
  format: FileFormat;
  error: string | null;
  parameterCount: number | null;
  tensorCount: number;
  summary: string;
}
