import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runCli } from "../harness/server.js";

/** docs/ of the repository: the README shows the screenshots the tests take. */
export const DOCS_DIR = fileURLToPath(new URL("../../../docs/", import.meta.url));

/** A valid safetensors file: 8-byte little-endian header length, the JSON header, the data. */
export function safetensors(tensors: { name: string; dtype: "F32" | "BF16" | "F16" | "I64"; shape: number[] }[]): Buffer {
  const width = { F32: 4, BF16: 2, F16: 2, I64: 8 };
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1) * width[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  while (json.length % 8 !== 0) json += " ";
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, Buffer.from(json), Buffer.alloc(offset, 7)]);
}

export function writeFiles(root: string, files: Record<string, Buffer | string>): void {
  for (const [name, content] of Object.entries(files)) {
    const path = join(root, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
  }
}

/** Runs the CLI against the server and fails loudly on a non-zero exit. */
export async function ckpt(env: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
  const result = await runCli(args, { env });
  if (result.code !== 0) throw new Error(`ckpt ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
  return result.stdout.trim();
}

/** The paths of the server's /openapi.json, to tell which extensions it serves. */
export async function openApiPaths(baseUrl: string): Promise<string[]> {
  const doc = (await (await fetch(`${baseUrl}/openapi.json`)).json()) as { paths?: Record<string, unknown> };
  return Object.keys(doc.paths ?? {});
}

export function hasRoute(paths: string[], pattern: RegExp): boolean {
  return paths.some((p) => pattern.test(p));
}
