/**
 * Processes scenario 7 (bench/transfer.ts) times beside the CLI, to show where ckpt's cost
 * against curl comes from:
 *
 *   node dist/bench/transfer-sides.js engine <api-url> <out>   the download engine (SDK) alone,
 *       without the CLI (its defaults: no digest announced, none computed)
 *   node dist/bench/transfer-sides.js sha256 <file>...         SHA-256 of the files, one thread,
 *       1 MiB reads: what hashing the downloaded bytes costs at least, whoever does it
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { downloadCheckpoint } from "../src/client/index.js";

const [mode, ...args] = process.argv.slice(2);
if (mode === "engine") {
  const [apiUrl, dest] = args;
  const summary = await downloadCheckpoint({ apiUrl: apiUrl!, apiKey: "bench", projectId: "proj", jobId: "job", dest: dest! });
  if (summary.failed.length) throw new Error(`${summary.failed.length} files failed: ${summary.failed[0]!.error}`);
} else if (mode === "sha256") {
  const buffer = Buffer.allocUnsafe(1 << 20);
  for (const path of args) {
    const hash = createHash("sha256");
    const fd = openSync(path, "r");
    for (let n; (n = readSync(fd, buffer, 0, buffer.length, null)) > 0; ) hash.update(buffer.subarray(0, n));
    closeSync(fd);
    hash.digest();
  }
} else {
  console.error("usage: transfer-sides engine <api-url> <out> | sha256 <file>...");
  process.exit(2);
}
