import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import { MAX_NODE_RANK } from "../domain/names.js";
import { CheckpointSync } from "../client/sync/checkpoint-sync.js";
import { CliError, clientFrom, parseIntegerOption, withRemoteOptions } from "./common.js";
import { describeFailures, describeSummary, log, logSyncEvent, syncTuningFrom, withSyncOptions, type SyncCliOptions } from "./sync-options.js";

interface SyncOptions extends SyncCliOptions {
  apiUrl?: string;
  apiKey?: string;
  project: string;
  job?: string;
  nodeRank: number;
  watch?: boolean;
}

export function registerSync(program: Command): void {
  withSyncOptions(
    withRemoteOptions(
      program
        .command("sync <dir>")
        .description(
          "upload DIR's files as checkpoint files of a job, each once it is complete (the engine of `ckpt run`, " +
            "for launchers that start training themselves); resumes where an earlier run stopped",
        )
        .requiredOption("--project <nameOrId>", "training project (name or id)")
        .option("--job <id>", "training job id (env CKPT_JOB_ID)")
        .option("--node-rank <n>", "node rank of these files; rank 0 also reports checkpoint_sync_status", parseIntegerOption("--node-rank", 0, MAX_NODE_RANK), 0)
        .option("--watch", "keep uploading as files complete until SIGINT/SIGTERM, then finish the complete ones"),
    ),
  ).action(async (dir: string, opts: SyncOptions) => {
    const client = clientFrom(opts);
    const jobId = opts.job ?? (process.env.CKPT_JOB_ID || undefined);
    if (jobId === undefined) throw new CliError("which job? pass --job <id> or set CKPT_JOB_ID");
    if (!(await stat(dir).catch(() => null))?.isDirectory()) throw new CliError(`${dir} is not a directory`);
    const project = await client.resolveProject(opts.project);
    const job = await client.getJob(project.id, jobId);

    // First signal: stop watching and finish what is complete. Second: stop at once.
    const stopWatching = new AbortController();
    const hardStop = new AbortController();
    const onSignal = (): void => {
      if (opts.watch && !stopWatching.signal.aborted) stopWatching.abort();
      else if (!hardStop.signal.aborted) hardStop.abort();
      else process.exit(130);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);

    const sync = await CheckpointSync.open({
      client,
      projectId: project.id,
      jobId: job.id,
      nodeRank: opts.nodeRank,
      dir: resolve(dir),
      ...syncTuningFrom(opts),
      reportSyncStatus: opts.nodeRank === 0,
      onEvent: logSyncEvent(opts.quiet === true),
      signal: hardStop.signal,
    });
    if (opts.watch) await sync.watch(stopWatching.signal);
    // Without a writer known to be gone, files still changing are waited for, never sent half-written.
    const summary = await sync.drain({ assumeComplete: false });
    await sync.close();

    if (!opts.quiet || summary.failed.length > 0) log(describeSummary(summary));
    if (hardStop.signal.aborted) throw new CliError("interrupted: run the same command again to finish", 130);
    if (summary.failed.length > 0) throw new CliError(`not synced:\n${describeFailures(summary)}`);
  });
}
