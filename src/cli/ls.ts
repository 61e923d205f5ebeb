import type { Command } from "commander";
import { latestCheckpointId } from "../client/download/latest-checkpoint.js";
import { fileSelector } from "../client/download/plan.js";
import { listAllFiles } from "../client/download/url-book.js";
import type { CheckpointFile } from "../client/types.js";
import { CkptApiError } from "../client/errors.js";
import { MAX_NODE_RANK } from "../domain/names.js";
import { clientFrom, collect, formatBytes, resolveProjectAndJob, table, withRemoteOptions } from "./common.js";
import { collectInteger, exitQuietlyOnBrokenPipe, outputOption, printable, printJson } from "./output.js";

export function registerLs(program: Command): void {
  withRemoteOptions(
    program
      .command("ls")
      .description("list a job's checkpoint files: rank, name, size, modified")
      .requiredOption("--project <nameOrId>", "training project (name or id)")
      .option("--job <id>", "training job id (default: the project's latest job)")
      .option("--checkpoint <id>", "only this checkpoint (top-level folder), or 'latest'")
      .option("--include <glob>", "only files matching this glob (repeatable; a glob without '/' matches base names)", collect)
      .option("--rank <n>", "only this node rank (repeatable)", collectInteger("--rank", 0, MAX_NODE_RANK))
      .option("--urls", "also show presigned URLs (anyone holding one can read the file until it expires)")
      .addOption(outputOption()),
  ).action(async (opts) => {
    exitQuietlyOnBrokenPipe();
    const client = clientFrom(opts);
    const list = async (args: { projectId: string; jobId: string }): Promise<void> => {
      const checkpointId = opts.checkpoint === "latest" ? await latestCheckpointId(client, args.projectId, args.jobId, () => listAllFiles(client, args)) : opts.checkpoint;
      const selected = fileSelector({ checkpointId, include: opts.include, nodeRanks: opts.rank });
      const shown = (file: CheckpointFile): Partial<CheckpointFile> => (opts.urls ? file : withoutUrl(file));

      if (opts.output === "jsonl") {
        // Streamed as pages arrive, so a script can start on the first files of a huge job.
        for await (const file of client.listCheckpointFiles(args)) if (selected(file)) process.stdout.write(JSON.stringify(shown(file)) + "\n");
        return;
      }
      const files = (await listAllFiles(client, args)).filter(selected);
      if (opts.output === "json") return printJson(files.map(shown));
      const header = ["RANK", "NAME", "SIZE", "MODIFIED", ...(opts.urls ? ["URL"] : [])];
      const rows = files.map((f) => [String(f.node_rank), printable(f.relative_file_name), formatBytes(f.size_bytes), f.last_modified, ...(opts.urls ? [f.url] : [])]);
      process.stdout.write(table([header, ...rows]));
    };
    // Ids are tried first (as everywhere): with --job given, --project is first taken as an id and
    // the listing itself is the one request. A 404 comes before any output (the first page), and
    // then --project is resolved as a name or id, the job looked up, and the listing made again.
    if (opts.job) {
      try {
        return await list({ projectId: opts.project, jobId: opts.job });
      } catch (err) {
        if (!(err instanceof CkptApiError) || err.status !== 404) throw err;
      }
    }
    const { project, job } = await resolveProjectAndJob(client, opts.project, opts.job);
    await list({ projectId: project.id, jobId: job.id });
  });
}

function withoutUrl(file: CheckpointFile): Omit<CheckpointFile, "url"> {
  const { url: _url, ...rest } = file;
  return rest;
}
