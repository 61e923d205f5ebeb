import { Option, type Command } from "commander";
import { downloadCheckpoint } from "../client/download/download-checkpoint.js";
import { DEFAULT_TUNING, type DownloadSummary } from "../client/download/types.js";
import { MAX_NODE_RANK } from "../domain/names.js";
import { resolveCheckpointRef } from "../client/checkpoint-ref.js";
import { writeDownloadManifest } from "../client/download-manifest.js";
import { describeNotComplete } from "./checkpoint-refusal.js";
import { apiFetch } from "../client/transfer/api-fetch.js";
import { CliError, clientFrom, collect, formatBytes, parseIntegerOption, resolveProjectAndJob, table, withRemoteOptions } from "./common.js";
import { createProgressReporter } from "./download-progress.js";
import { finishingMessage, handleInterrupts } from "./interrupt.js";
import { collectInteger, exitQuietlyOnBrokenPipe, jsonFlagOption, outputOption, parseByteSize, printable } from "./output.js";
import { createReporter, quietOption } from "./reporter.js";

export function registerDownload(program: Command): void {
  withRemoteOptions(
    program
      .command("download")
      .description(
        "download a job's checkpoint files into DIR/rank-<node_rank>/<relative_file_name>; " +
          "resumable (run it again after an interruption), verified, and safe to point at Baseten",
      )
      .requiredOption("--project <nameOrId>", "training project (name or id)")
      .option("--job <id>", "training job id (default: the project's latest job)")
      .option("--out <dir>", "destination folder (default: ./<job id>)")
      .option("--checkpoint <ref>", "only this checkpoint: its id (top-level folder), 'latest' (the newest COMPLETE one), or @ALIAS (any job; @best: the job's best)")
      .option("--allow-partial", "download a checkpoint that is not COMPLETE (still WRITING, or INCOMPLETE)")
      .option("--include <glob>", "only files matching this glob (repeatable; a glob without '/' matches base names)", collect)
      .option("--rank <n>", "only this node rank (repeatable)", collectInteger("--rank", 0, MAX_NODE_RANK))
      .option("--flat", "no rank-<n> folder (only when a single rank is selected)")
      .option(
        "--concurrency <n>",
        `files downloaded at once, and the connections the last large files share (default ${DEFAULT_TUNING.concurrency})`,
        parseIntegerOption("--concurrency", 1, 1024),
      )
      .option("--parts-per-file <n>", `most ranged requests in flight for one file (default ${DEFAULT_TUNING.partsPerFile})`, parseIntegerOption("--parts-per-file", 1, 256))
      .option("--part-size <size>", `bytes per ranged request, e.g. 64MiB (default ${formatBytes(DEFAULT_TUNING.partSize)})`, parseByteSize("--part-size"))
      .option("--retries <n>", "tries per request before a file is given up (default 6)", parseIntegerOption("--retries", 1, 100))
      .option("--idle-timeout <seconds>", "abandon (and retry) a response that sends nothing for this long (default 60)", parseIntegerOption("--idle-timeout", 1, 3600))
      .option("--dry-run", "list what would be downloaded, resumed or skipped; write nothing")
      .option("--hash", "also hash files whose SHA-256 the server does not announce (Baseten announces none), so the manifest records a digest of every file and `ckpt verify` checks their bytes, not just their size; costs CPU")
      .addOption(new Option("--no-hash", "the default: hash only files whose SHA-256 the server announces (and verify those)").hideHelp())
      .addOption(outputOption())
      .addOption(jsonFlagOption("jsonl", "same as -o jsonl: every event as a JSON line on stdout"))
      .addOption(quietOption()),
  ).action(async (opts) => {
    exitQuietlyOnBrokenPipe();
    // One idle timeout for the API calls and the transfers alike.
    const idleTimeoutMs = opts.idleTimeout === undefined ? undefined : opts.idleTimeout * 1000;
    const client = clientFrom(opts, process.env, apiFetch({ idleTimeoutMs }));
    const reporter = createReporter(opts);
    const progress = createProgressReporter(opts.output, reporter);
    // From the start: a Ctrl-C while the job and checkpoint are being looked up lets those
    // requests end, then starts no download.
    const interrupts = handleInterrupts({ onFirst: (signal) => reporter.info(finishingMessage(signal)) });
    const interrupted = () => interrupts.error("interrupted: run the same command again to resume");
    // --hash: a digest of every file in the manifest, hashed as it lands or, if skipped, read back.
    const hashEveryFile = opts.hash === true;
    let summary: DownloadSummary;
    let target: Awaited<ReturnType<typeof resolveDownloadTarget>>;
    try {
      target = await resolveDownloadTarget(client, opts);
      if (interrupts.signal.aborted) throw interrupted();
      summary = await downloadCheckpoint({
        client,
        projectId: target.project.id,
        jobId: target.job.id,
        dest: opts.out ?? target.job.id,
        checkpoint: target.checkpoint?.id,
        include: opts.include,
        nodeRanks: opts.rank,
        flat: opts.flat,
        concurrency: opts.concurrency,
        partsPerFile: opts.partsPerFile,
        partSize: opts.partSize,
        retry: opts.retries === undefined ? undefined : { attempts: opts.retries },
        idleTimeoutMs,
        dryRun: opts.dryRun,
        hashFiles: hashEveryFile,
        signal: interrupts.signal,
        onProgress: (event) => progress.onEvent(event),
      });
    } catch (err) {
      reporter.clearProgress();
      if (interrupts.signal.aborted) throw interrupted();
      throw err;
    } finally {
      interrupts.dispose();
    }
    const { project, job, checkpoint } = target;
    if (!opts.dryRun && summary.failed.length === 0 && summary.files.length > 0)
      await writeDownloadManifest(
        summary.dest,
        { projectId: project.id, jobId: job.id, checkpointId: checkpoint?.id ?? null, state: checkpoint?.state ?? null },
        summary.files,
        { readBackUnhashed: hashEveryFile },
      );
    if (summary.files.length === 0) throw new CliError(`nothing to download: no checkpoint file of job ${job.id} matches the selection`);
    if (opts.dryRun && opts.output === "table") printPlan(summary);
    progress.finish(summary);
    if (summary.failed.length)
      throw new CliError(
        `${summary.failed.length} of ${summary.files.length} files failed:\n` +
          summary.failed.map((f) => `  ${printable(f.file.localName)}: ${printable(f.error)}`).join("\n") +
          (summary.failed.length < summary.files.length ? "\nthe other files are complete; run the same command again to retry" : ""),
      );
  });
}

function printPlan(summary: DownloadSummary): void {
  process.stdout.write(
    table([
      ["ACTION", "RANK", "SIZE", "PATH"],
      ...summary.files.map((f) => [
        f.action === "resume" ? `resume (${formatBytes(f.resumableBytes)} here)` : f.action,
        String(f.nodeRank),
        formatBytes(f.sizeBytes),
        printable(f.localName),
      ]),
    ]),
  );
}

/**
 * The job and checkpoint a download is about. `--checkpoint @ALIAS` names its own job (no
 * `--job` needed); a checkpoint that is not COMPLETE is refused unless `--allow-partial`, with
 * what is missing or still arriving. A server without states (Baseten) is taken at its word.
 */
async function resolveDownloadTarget(
  client: ReturnType<typeof clientFrom>,
  opts: { project: string; job?: string; checkpoint?: string; allowPartial?: boolean },
) {
  if (!opts.checkpoint) return { ...(await resolveProjectAndJob(client, opts.project, opts.job)), checkpoint: null };
  const project = await client.resolveProject(opts.project);
  const resolved = await resolveCheckpointRef(client, project.id, opts.checkpoint, () =>
    opts.job ? client.getJob(project.id, opts.job) : client.latestJob(project.id),
  );
  if (opts.job && opts.checkpoint.startsWith("@") && opts.checkpoint !== "@best" && resolved.jobId !== opts.job)
    throw new CliError(`${opts.checkpoint} points at job ${resolved.jobId}, not --job ${opts.job}`);
  const job = await client.getJob(project.id, resolved.jobId);
  const state = resolved.checkpoint?.state ?? null;
  if (state !== null && state !== "COMPLETE" && !opts.allowPartial)
    throw new CliError(await describeNotComplete(client, project.id, job.id, resolved.checkpoint!));
  return { project, job, checkpoint: { id: resolved.checkpointId, state } };
}
