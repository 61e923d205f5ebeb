import type { Command } from "commander";
import { readdir, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { relativeNameProblem } from "../domain/names.js";
import { uploadFileDirect } from "../client/direct-upload.js";
import { SMALL_FILE_BYTES, sha256OfFile, uploadCheckpointFile } from "../client/upload.js";
import type { CheckpointFile } from "../client/types.js";
import { CliError, clientFrom, formatBytes, parseIntegerOption, withRemoteOptions } from "./common.js";

/** Regular files under `root`, as relative names with '/' separators. Symlinks are not followed. */
async function* walkFiles(root: string, dir = root): AsyncGenerator<{ path: string; name: string }> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walkFiles(root, path);
    else if (entry.isFile()) yield { path, name: relative(root, path).split(sep).join("/") };
  }
}

async function runPool<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

export function registerPush(program: Command): void {
  withRemoteOptions(
    program
      .command("push <dir>")
      .description("upload every file under DIR as checkpoint files of a job (paths relative to DIR)")
      .requiredOption("--project <nameOrId>", "training project (name or id)")
      .requiredOption("--job <id>", "training job id")
      .option("--node-rank <n>", "node rank of these files", parseIntegerOption("--node-rank", 0, 65535), 0)
      .option("--concurrency <n>", "files uploaded at once", parseIntegerOption("--concurrency", 1, 256), 8)
      .option("--via-server", "stream every file through the API server (one PUT each), not only the small ones")
      .option("--quiet", "print nothing but errors"),
  ).action(async (dir: string, opts) => {
    const client = clientFrom(opts);
    if (!(await stat(dir).catch(() => null))?.isDirectory()) throw new CliError(`${dir} is not a directory`);
    const project = await client.resolveProject(opts.project);
    const job = await client.getJob(project.id, opts.job);
    const nodeRank: number = opts.nodeRank;

    const local: { path: string; name: string; size: number }[] = [];
    for await (const f of walkFiles(dir)) {
      const problem = relativeNameProblem(f.name);
      if (problem) throw new CliError(`cannot push ${f.name}: ${problem}`);
      local.push({ ...f, size: (await stat(f.path)).size });
    }
    const remote = new Map<string, CheckpointFile>();
    for await (const f of client.listCheckpointFiles({ projectId: project.id, jobId: job.id }))
      if (f.node_rank === nodeRank) remote.set(f.relative_file_name, f);

    // Largest first: the long uploads start at once and the small files fill the gaps around them.
    local.sort((a, b) => b.size - a.size);

    // Learnt from the first direct upload's plan: on the embedded store the parts would pass
    // through the API server anyway, and one streamed PUT per file measured faster (fewer
    // requests, no re-read of the file at completion).
    let partsViaApiServer = false;
    let uploaded = 0;
    let skipped = 0;
    let bytes = 0;
    const failures: string[] = [];
    await runPool(local, opts.concurrency, async (f) => {
      try {
        // Hashed up front only to decide a skip; otherwise the upload hashes as it reads.
        let sha256: string | undefined;
        const existing = remote.get(f.name);
        if (existing && existing.size_bytes === f.size) {
          sha256 = await sha256OfFile(f.path);
          if ((await remoteSha256(existing.url, f.size)) === sha256) {
            skipped++;
            return;
          }
        }
        const target = { projectId: project.id, jobId: job.id, nodeRank, relativeName: f.name, path: f.path, sha256 };
        // A small file goes in one PUT through the server: one request instead of three (begin,
        // part, complete), and the server does a third of the work; large ones go direct.
        if (opts.viaServer || partsViaApiServer || f.size <= SMALL_FILE_BYTES) await uploadCheckpointFile(client, target);
        else
          await uploadFileDirect(client, {
            ...target,
            whenPartsViaApiServer: () => {
              partsViaApiServer = true;
              return uploadCheckpointFile(client, target);
            },
          });
        uploaded++;
        bytes += f.size;
        if (!opts.quiet) process.stderr.write(`uploaded ${f.name} (${formatBytes(f.size)})\n`);
      } catch (err) {
        failures.push(`${f.name}: ${(err as Error).message}`);
      }
    });
    if (!opts.quiet)
      process.stderr.write(`${uploaded} uploaded (${formatBytes(bytes)}), ${skipped} already up to date, ${failures.length} failed\n`);
    if (failures.length) throw new CliError(`failed to upload:\n  ${failures.join("\n  ")}`);
  });
}

/**
 * The digest a presigned URL's server reports (ckpt: x-ckpt-sha256; S3: x-amz-meta-sha256).
 * A one-byte ranged GET, not a HEAD: S3 refuses HEAD with a URL presigned for GET.
 */
async function remoteSha256(url: string, sizeBytes: number): Promise<string | null> {
  // An empty file has no byte 0 to ask for; its whole body is nothing anyway.
  const response = await fetch(url, sizeBytes > 0 ? { headers: { range: "bytes=0-0" } } : {}).catch(() => null);
  if (!response) return null;
  await response.body?.cancel().catch(() => {});
  if (!response.ok) return null;
  return response.headers.get("x-ckpt-sha256") ?? response.headers.get("x-amz-meta-sha256");
}
