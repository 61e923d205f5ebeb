import { SAFETENSORS_DTYPE_BITS, buildSafetensors } from "../../src/formats/safetensors.js";

/** A valid safetensors file: header, then zeroed (or given) data. */
export function safetensorsFile(tensors: { name: string; dtype: string; shape: number[] }[], metadata?: Record<string, string>): Buffer {
  const { header, dataBytes } = buildSafetensors(tensors, metadata);
  return Buffer.concat([header, Buffer.alloc(dataBytes, 7)]);
}

/** A file with this exact header text and data length; `declared` overrides the length prefix. */
export function rawSafetensors(headerJson: string, dataBytes: number, declared?: bigint): Buffer {
  const body = Buffer.from(headerJson);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(declared ?? BigInt(body.length));
  return Buffer.concat([prefix, body, Buffer.alloc(dataBytes)]);
}

/** One tensor of every dtype of the format, shape [2, 4] (8 elements: whole bytes for 4- and 6-bit types too). */
export const EVERY_DTYPE = Object.keys(SAFETENSORS_DTYPE_BITS).map((dtype) => ({ name: `t.${dtype.toLowerCase()}`, dtype, shape: [2, 4] }));

const f32 = (start: number, end: number, shape = [(end - start) / 4]) => ({ dtype: "F32", shape, data_offsets: [start, end] });

/** Each hostile header the issue lists, with the reason inspection must give. */
export const HOSTILE_HEADERS: { name: string; bytes: Buffer; reason: RegExp }[] = [
  { name: "length-beyond-file", bytes: rawSafetensors('{"a":{}}', 0, 1000n), reason: /runs past the end of the file/ },
  { name: "length-above-cap", bytes: rawSafetensors('{"a":{}}', 0, 200_000_000n), reason: /above the format's cap/ },
  { name: "length-u64-max", bytes: rawSafetensors('{"a":{}}', 0, 0xffffffffffffffffn), reason: /above the format's cap/ },
  { name: "invalid-json", bytes: rawSafetensors('{"a": {"dtype": "F32", ', 0), reason: /not valid JSON/ },
  { name: "not-an-object", bytes: rawSafetensors("[1, 2, 3]", 0), reason: /does not start with|not a JSON object/ },
  { name: "overlap", bytes: rawSafetensors(JSON.stringify({ a: f32(0, 8), b: f32(4, 12) }), 12), reason: /overlap/ },
  { name: "gap", bytes: rawSafetensors(JSON.stringify({ a: f32(0, 8), b: f32(16, 24) }), 24), reason: /gap of 8 bytes/ },
  { name: "past-end", bytes: rawSafetensors(JSON.stringify({ a: f32(0, 8), b: f32(8, 16) }), 12), reason: /past the end of the data/ },
  { name: "unknown-dtype", bytes: rawSafetensors(JSON.stringify({ a: { dtype: "Q7", shape: [2], data_offsets: [0, 2] } }), 2), reason: /unknown dtype 'Q7'/ },
  { name: "shape-size-mismatch", bytes: rawSafetensors(JSON.stringify({ a: f32(0, 8, [3]) }), 8), reason: /is 12 bytes but data_offsets span 8/ },
  { name: "sub-byte-misaligned", bytes: rawSafetensors(JSON.stringify({ a: { dtype: "F4", shape: [3], data_offsets: [0, 2] } }), 2), reason: /not a whole number of bytes/ },
  {
    name: "duplicate-names",
    bytes: rawSafetensors(`{"a":${JSON.stringify(f32(0, 8))},"a":${JSON.stringify(f32(8, 16))}}`, 16),
    reason: /duplicate entry 'a'/,
  },
  { name: "trailing-bytes", bytes: rawSafetensors(JSON.stringify({ a: f32(0, 8) }), 20), reason: /12 bytes after the last tensor belong to none/ },
  { name: "nul-in-name", bytes: rawSafetensors(JSON.stringify({ "a\u0000b": { dtype: "Q7", shape: [2], data_offsets: [0, 2] } }), 2), reason: /tensor 'a(?:\\u0000|\u0000)b' has unknown dtype/ },
  { name: "shorter-than-prefix", bytes: Buffer.from([1, 2, 3]), reason: /shorter than the 8-byte header length/ },
  { name: "bad-utf8", bytes: Buffer.concat([rawSafetensors('{"a":1}', 0).subarray(0, 8), Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x20, 0x20, 0x20])]), reason: /not valid UTF-8/ },
];
