import { spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { constants } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import type { CkptClient } from "../client/api.js";
import { backoffDelay } from "../client/download/retry.js";
import { DEFAULT_RETRY_POLICY } from "../client/download/types.js";
import { CkptApiError } from "../client/errors.js";
import { getLoadCheckpointPlan, loadCheckpoints } from "../client/load-checkpoints.js";
import { LogShipper, type LogShipSummary } from "../client/logs/log-shipper.js";
import { tee } from "../client/logs/tee.js";
import { MAX_NODE_RANK } from "../domain/names.js";
import { CheckpointSync } from "../client/sync/checkpoint-sync.js";
import type { SyncSummary } from "../client/sync/types.js";
import type { TrainingJob, TrainingProject } from "../client/types.js";
import { CliError, clientFrom, parseIntegerOption, withRemoteOptions } from "./common.js";
import { parseByteSize, printable } from "./output.js";
import {
  describeFailures,
  describeSummary,
  log,
  logSyncEvent,
  parseSeconds,
  syncTuningFrom,
  withSyncOptions,
  type SyncCliOptions,
} from "./sync-options.js";

interface RunOptions extends SyncCliOptions {
  apiUrl?: string;
  apiKey?: string;
  project: string;
  job?: string;
  jobName?: string;
  nodeRank: number;
  checkpointDir?: string;
  /** false with --no-logs. */
  logs: boolean;
  logBuffer?: number;
  logFlushTimeout?: number;
  /** Baseten's LoadCheckpointConfig for the job rank 0 creates. */
  loadCheckpointConfig?: Record<string, unknown>;
}

/** How the training command ended. */
interface CommandExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** It could not be started at all (not found, not executable). */
  spawnError: NodeJS.ErrnoException | null;
  /** We were asked to stop it (SIGINT/SIGTERM), whatever it then did. */
  stopRequested: boolean;
}

export function registerRun(program: Command): void {
  withSyncOptions(
    withRemoteOptions(
      program
        .command("run")
        .usage("--project <nameOrId> [options] -- CMD [ARGS...]")
        .description(
          "run a training command and upload its checkpoints as they are written: creates the job (rank 0) or " +
            "joins it (--job or CKPT_JOB_ID), sets CKPT_CHECKPOINT_DIR/BT_CHECKPOINT_DIR and CKPT_NODE_RANK/BT_NODE_RANK, " +
            "marks the job COMPLETED, FAILED or STOPPED when CMD ends, and exits with CMD's exit code",
        )
        .argument("<command...>", "the training command, after --")
        .requiredOption("--project <nameOrId>", "training project (name or id); created if it does not exist")
        .option("--job <id>", "join this job instead of creating one (env CKPT_JOB_ID); required for ranks above 0")
        .option("--job-name <name>", "name of the job rank 0 creates")
        .option("--node-rank <n>", "this node's rank; only rank 0 changes the job's status", parseIntegerOption("--node-rank", 0, MAX_NODE_RANK), 0)
        .option("--checkpoint-dir <dir>", "folder CMD writes checkpoints to (default ./ckpt-checkpoints/<job id>/rank-<n>)")
        .option(
          "--load-checkpoint-config <json>",
          "Baseten's LoadCheckpointConfig for the job rank 0 creates, e.g. " +
            `'{"enabled":true,"checkpoints":[{"typ":"baseten_latest_checkpoint","project_name":"P"}]}'`,
          parseJsonObject("--load-checkpoint-config"),
        )
        .option("--no-logs", "do not send CMD's stdout/stderr to the job's logs (CMD then writes to the terminal itself)")
        .option("--log-buffer <size>", "most of CMD's output held for the server; beyond it the oldest lines are dropped (default 8MiB)", parseByteSize("--log-buffer"))
        .option("--log-flush-timeout <seconds>", "after CMD exits, how long the last output may take to reach the server (default 5)", parseSeconds("--log-flush-timeout")),
    ),
  ).action(async (command: string[], opts: RunOptions) => {
    process.exitCode = await runTraining(command, opts);
  });
}

async function runTraining(command: string[], opts: RunOptions): Promise<number> {
  const client = clientFrom(opts);
  const isLeader = opts.nodeRank === 0;
  const { project, job } = await createOrJoinJob(client, opts);
  const loaded = await loadCheckpointsBeforeStart(client, project, job, opts);
  if (loaded === "failed") return 1;
  const dir = resolve(opts.checkpointDir ?? join("ckpt-checkpoints", job.id, `rank-${opts.nodeRank}`));
  await mkdir(dir, { recursive: true });

  const hardStop = new AbortController();
  const sync = await CheckpointSync.open({
    client,
    projectId: project.id,
    jobId: job.id,
    nodeRank: opts.nodeRank,
    dir,
    ...syncTuningFrom(opts),
    reportSyncStatus: isLeader,
    onEvent: logSyncEvent(opts.quiet === true),
    signal: hardStop.signal,
  });
  if (isLeader) await client.updateJob(project.id, job.id, { current_status: "TRAINING_JOB_RUNNING", error_message: null });
  if (!opts.quiet) log(`job ${job.id} of project ${printable(project.name)}, rank ${opts.nodeRank}; checkpoints in ${dir}`);

  const stopWatching = new AbortController();
  const watching = sync.watch(stopWatching.signal);
  const shipper = opts.logs
    ? new LogShipper({
        client,
        projectId: project.id,
        jobId: job.id,
        nodeRank: opts.nodeRank,
        maxBufferedBytes: opts.logBuffer,
        notBeforeMs: Date.parse(job.created_at),
        onWarning: log,
      })
    : null;
  const env = trainingEnv({ client, project, job, nodeRank: opts.nodeRank, dir });
  if (loaded) {
    env.BT_LOAD_CHECKPOINT_DIR = loaded;
    env.CKPT_LOAD_CHECKPOINT_DIR = loaded;
  }
  // Python block-buffers a pipe; line by line, its output reaches the terminal and the logs as it is written.
  if (shipper && env.PYTHONUNBUFFERED === undefined) env.PYTHONUNBUFFERED = "1";
  const exit = await runCommand(command, env, shipper, () => {
    // First signal after the command ended: cut the final sync short. Another one: leave now.
    if (hardStop.signal.aborted) process.exit(130);
    hardStop.abort();
  });
  const logSummary = shipper ? shipper.close((opts.logFlushTimeout ?? 5) * 1000) : null;
  stopWatching.abort();
  await watching;

  // The command is gone, so nothing is being written any more: everything on disk is final.
  const unsettledAtExit = sync.unsettledNames();
  const summary = await sync.drain({ assumeComplete: true });
  await sync.close();
  reportFinalSync(summary, { exit, unsettledAtExit, interrupted: hardStop.signal.aborted, jobId: job.id, dir, opts });
  if (logSummary) reportLogs(await logSummary);

  if (isLeader) await reportJobOutcome(client, project.id, job.id, finalJobChange(exit, summary));
  return exitCodeOf(exit);
}

/** Rank 0 creates the job unless one is given; the other ranks must be given rank 0's. */
async function createOrJoinJob(client: CkptClient, opts: RunOptions): Promise<{ project: TrainingProject; job: TrainingJob }> {
  const jobId = opts.job ?? (process.env.CKPT_JOB_ID || undefined);
  if (jobId === undefined) {
    if (opts.nodeRank > 0) throw new CliError(`rank ${opts.nodeRank} joins rank 0's job: pass --job <id> or set CKPT_JOB_ID`);
    const project = await resolveOrCreateProject(client, opts.project);
    const spec: Record<string, unknown> = opts.jobName === undefined ? {} : { name: opts.jobName };
    if (opts.loadCheckpointConfig) spec.runtime = { load_checkpoint_config: opts.loadCheckpointConfig };
    const job = await client.createJob(project.id, spec);
    return { project, job };
  }
  if (opts.loadCheckpointConfig) throw new CliError("--load-checkpoint-config applies to the job ckpt run creates; the given job has its own");
  const project = await client.resolveProject(opts.project);
  return { project, job: await client.getJob(project.id, jobId) };
}

/**
 * Baseten's checkpoint loading: the job's `runtime.load_checkpoint_config`, resolved by the
 * server, downloaded for this rank before the command starts. Answers the download folder (null
 * when the job loads nothing), or "failed" once the job is marked FAILED (rank 0) and the reason
 * printed: the command is not started without the checkpoints it asked for.
 */
async function loadCheckpointsBeforeStart(
  client: CkptClient,
  project: TrainingProject,
  job: TrainingJob,
  opts: RunOptions,
): Promise<string | null | "failed"> {
  const isLeader = opts.nodeRank === 0;
  try {
    const plan = await getLoadCheckpointPlan(client, project.id, job.id);
    if (!plan.enabled) return null;
    if (isLeader) await client.updateJob(project.id, job.id, { current_status: "TRAINING_JOB_DEPLOYING", error_message: null });
    if (!opts.quiet) log(`loading ${plan.checkpoints.length} checkpoint(s) into ${plan.download_folder}/rank-${opts.nodeRank}`);
    const loaded = await loadCheckpoints({ client, plan, nodeRank: opts.nodeRank });
    if (!opts.quiet && loaded)
      for (const d of loaded.downloads) log(`loaded checkpoint ${d.checkpoint ?? "?"}: ${d.files.length} file(s), ${d.downloaded} downloaded, ${d.skipped} already there`);
    return loaded?.dir ?? null;
  } catch (err) {
    const message = `could not load checkpoints: ${(err as Error).message}`;
    log(message);
    if (isLeader) await reportJobOutcome(client, project.id, job.id, { current_status: "TRAINING_JOB_FAILED", error_message: message });
    return "failed";
  }
}

function parseJsonObject(name: string) {
  return (raw: string): Record<string, unknown> => {
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw new CliError(`${name} must be JSON (got '${raw}')`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new CliError(`${name} must be a JSON object`);
    return value as Record<string, unknown>;
  };
}

/** A training launcher should not need a separate step to create its project. */
async function resolveOrCreateProject(client: CkptClient, nameOrId: string): Promise<TrainingProject> {
  try {
    return await client.resolveProject(nameOrId);
  } catch (err) {
    if (err instanceof CkptApiError && err.status === 404) return client.upsertProject(nameOrId);
    throw err;
  }
}

/**
 * The training command's environment: where to write checkpoints and which rank this is, under
 * both ckpt's names and Baseten's (so scripts written for Baseten run unchanged), and the job and
 * server, so that a launcher started as rank 0's command can hand them to the other ranks. The API
 * key is not added: a key given with --api-key stays out of the environment of everything CMD starts.
 */
function trainingEnv(args: { client: CkptClient; project: TrainingProject; job: TrainingJob; nodeRank: number; dir: string }): NodeJS.ProcessEnv {
  return {
    ...process.env,
    CKPT_CHECKPOINT_DIR: args.dir,
    BT_CHECKPOINT_DIR: args.dir,
    CKPT_NODE_RANK: String(args.nodeRank),
    BT_NODE_RANK: String(args.nodeRank),
    CKPT_PROJECT_ID: args.project.id,
    CKPT_JOB_ID: args.job.id,
    CKPT_API_URL: args.client.apiUrl,
  };
}

/**
 * Runs the command with our stdio and relays SIGINT/SIGTERM to it. Once it has exited, a signal
 * means "stop now" and calls `onSignalAfterExit` (the final sync is cut short; `ckpt sync` can
 * finish it later).
 *
 * SIGTERM is always forwarded. SIGINT is not forwarded the first time when stdin is a terminal:
 * Ctrl-C already reached the command through the terminal's process group, and a second SIGINT
 * could interrupt the handler that is saving a last checkpoint. A repeated SIGINT is forwarded.
 */
async function runCommand(
  command: string[],
  env: NodeJS.ProcessEnv,
  shipper: LogShipper | null,
  onSignalAfterExit: () => void,
): Promise<CommandExit> {
  const [file, ...args] = command as [string, ...string[]];
  const child = spawn(file, args, { env, stdio: shipper ? ["inherit", "pipe", "pipe"] : "inherit" });
  // Teed, not inherited: the terminal gets every byte as before, the shipper a copy it may drop.
  const output = shipper
    ? Promise.all([
        tee(child.stdout!, process.stdout, (chunk) => shipper.write("stdout", chunk)),
        tee(child.stderr!, process.stderr, (chunk) => shipper.write("stderr", chunk)),
      ])
    : Promise.resolve();
  let exited = false;
  let stopRequested = false;
  let interrupts = 0;
  const relay = (signal: NodeJS.Signals): void => {
    if (exited) return onSignalAfterExit();
    stopRequested = true;
    if (signal === "SIGINT") interrupts++;
    const reachedByTerminal = signal === "SIGINT" && interrupts === 1 && process.stdin.isTTY === true;
    if (!reachedByTerminal) child.kill(signal);
  };
  process.on("SIGINT", relay);
  process.on("SIGTERM", relay);
  const ended = await new Promise<Omit<CommandExit, "stopRequested">>((resolveExit) => {
    child.once("error", (err) => resolveExit({ code: null, signal: null, spawnError: err }));
    child.once("exit", (code, signal) => resolveExit({ code, signal, spawnError: null }));
  });
  exited = true;
  // The last output may still be in the pipes; a daemon the command left behind may hold them open.
  await Promise.race([output, sleep(2000)]);
  // The relay stays installed until we exit: a late signal must cut the final sync short, not kill us mid-journal.
  return { ...ended, stopRequested };
}

function exitCodeOf(exit: CommandExit): number {
  if (exit.spawnError) return exit.spawnError.code === "ENOENT" ? 127 : 126;
  if (exit.code !== null) return exit.code;
  return 128 + (exit.signal ? constants.signals[exit.signal] : 0);
}

function describeExit(exit: CommandExit): string {
  if (exit.spawnError) return `the command could not be started: ${exit.spawnError.message}`;
  if (exit.code !== null) return `the command exited with code ${exit.code}`;
  return `the command was killed by ${exit.signal}`;
}

function reportFinalSync(
  summary: SyncSummary,
  context: { exit: CommandExit; unsettledAtExit: string[]; interrupted: boolean; jobId: string; dir: string; opts: RunOptions },
): void {
  const { exit, unsettledAtExit, opts } = context;
  if (exit.spawnError) log(describeExit(exit));
  const succeeded = exit.code === 0 && !exit.stopRequested;
  if (!succeeded && unsettledAtExit.length > 0)
    log(
      `warning: these files were still changing when the command ended and were uploaded as they are on disk; ` +
        `they may be incomplete:\n${listSome(unsettledAtExit)}`,
    );
  if (!opts.quiet || summary.failed.length > 0) log(`final sync: ${describeSummary(summary)}`);
  if (summary.failed.length > 0) {
    log(`not synced:\n${describeFailures(summary)}`);
    const finish = `ckpt sync --project ${opts.project} --job ${context.jobId} --node-rank ${opts.nodeRank} ${context.dir}`;
    log(`${context.interrupted ? "final sync interrupted" : "some files did not upload"}; \`${finish}\` finishes them`);
  }
}

/** The job's logs lost lines only when the server could not keep up: say how many. */
function reportLogs(summary: LogShipSummary): void {
  if (summary.droppedLines === 0) return;
  const why = summary.lastError ? ` (last error: ${summary.lastError})` : "";
  log(
    `warning: ${summary.droppedLines} line(s) of the command's output were not sent to the job's logs${why}; ` +
      `${summary.sentLines} were. The output shown here is complete.`,
  );
}

/** Names one per line, indented; a long list is cut short. */
function listSome(names: string[], max = 20): string {
  const shown = names.slice(0, max).map((name) => `  ${printable(name)}`);
  if (names.length > max) shown.push(`  … and ${names.length - max} more`);
  return shown.join("\n");
}

type JobChange = Parameters<CkptClient["updateJob"]>[2];

/** The job's final status: STOPPED if we were asked to stop, else COMPLETED on exit code 0, else FAILED. */
function finalJobChange(exit: CommandExit, summary: SyncSummary): JobChange {
  const checkpoint_sync_status = summary.failed.length === 0 ? "COMPLETED" : "SYNCING";
  if (exit.stopRequested) return { current_status: "TRAINING_JOB_STOPPED", error_message: null, checkpoint_sync_status };
  if (exit.code === 0) return { current_status: "TRAINING_JOB_COMPLETED", error_message: null, checkpoint_sync_status };
  return { current_status: "TRAINING_JOB_FAILED", error_message: describeExit(exit), checkpoint_sync_status };
}

/** Rank 0 moves the job to its final status, after the final sync. Retried: the status matters. */
async function reportJobOutcome(client: CkptClient, projectId: string, jobId: string, change: JobChange): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.updateJob(projectId, jobId, change);
      return;
    } catch (err) {
      if (attempt >= DEFAULT_RETRY_POLICY.attempts) {
        log(`warning: could not mark job ${jobId} ${change.current_status}: ${(err as Error).message}`);
        return;
      }
      await sleep(backoffDelay(attempt, DEFAULT_RETRY_POLICY));
    }
  }
}
