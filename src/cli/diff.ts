import type { Command } from "commander";
import type { CkptClient } from "../client/api.js";
import { diffCheckpoints, type CheckpointDiff } from "../client/diff-checkpoints.js";
import { inspectCheckpoint } from "../client/inspect-checkpoint.js";
import { resolveCheckpointTarget } from "./checkpoint-ref.js";
import { CliError, clientFrom, describeError, parseIntegerOption, withRemoteOptions } from "./common.js";
import { formatShape, viaOption } from "./inspect.js";
import { outputOption, printable, printJson, printJsonLines } from "./output.js";

/** `[JOB:]CHECKPOINT` or `@alias`: the job part defaults to --job (or the latest job). */
function parseSide(side: string): { job?: string; checkpoint: string } {
  if (side.startsWith("@")) return { checkpoint: side };
  const colon = side.indexOf(":");
  if (colon === -1) return { checkpoint: side };
  const job = side.slice(0, colon);
  const checkpoint = side.slice(colon + 1);
  if (job === "" || checkpoint === "") throw new CliError(`'${side}' is not [JOB:]CHECKPOINT`, 2);
  return { job, checkpoint };
}

export function registerDiff(program: Command): void {
  withRemoteOptions(
    program
      .command("diff <a> <b>")
      .description("compare two checkpoints ([JOB:]CHECKPOINT or @alias): tensors added, removed, reshaped or retyped, files changed; exit 0 identical, 1 different")
      .requiredOption("--project <nameOrId>", "training project (name or id)")
      .option("--job <id>", "job of a side without JOB: (default: the project's latest job)")
      .option("--concurrency <n>", "headers read at once in the Range fallback", parseIntegerOption("--concurrency", 1, 64), 8)
      .addOption(viaOption())
      .addOption(outputOption()),
  ).action(async (a: string, b: string, opts) => {
    let diff: CheckpointDiff;
    let sides: { job: string; checkpoint: string }[];
    try {
      const client = clientFrom(opts);
      const inspected = await Promise.all([a, b].map((side) => inspectSide(client, opts, side)));
      sides = inspected.map((s) => ({ job: s.jobId, checkpoint: s.inspection.checkpoint_id }));
      diff = diffCheckpoints(inspected[0]!.inspection, inspected[1]!.inspection);
    } catch (err) {
      // Like diff(1): 2 is trouble, so 1 always means "they differ".
      throw new CliError(describeError(err), 2);
    }
    if (opts.output === "json") printJson({ a: sides[0], b: sides[1], ...diff });
    else if (opts.output === "jsonl") printJsonLines(diffLines(diff));
    else process.stdout.write(renderDiff(diff));
    process.exitCode = diff.identical ? 0 : 1;
  });
}

async function inspectSide(client: CkptClient, opts: { project: string; job?: string; via: "auto" | "extension" | "range"; concurrency: number }, side: string) {
  const { job: jobPart, checkpoint } = parseSide(side);
  const { projectId, jobId, checkpointId } = await resolveCheckpointTarget(client, opts.project, jobPart ?? opts.job, checkpoint);
  return { jobId, inspection: await inspectCheckpoint(client, { projectId, jobId, checkpointId, via: opts.via, concurrency: opts.concurrency }) };
}

/** `-o jsonl`: one line per difference, tensors then files, each with what kind it is. */
function diffLines(d: CheckpointDiff): Record<string, unknown>[] {
  return [
    ...d.added.map((t) => ({ kind: "tensor", change: "added", ...t })),
    ...d.removed.map((t) => ({ kind: "tensor", change: "removed", ...t })),
    ...d.changed.map(({ changes, ...t }) => ({ kind: "tensor", change: "changed", changes, ...t })),
    ...d.files.map((f) => ({ kind: "file", ...f })),
  ];
}

function renderDiff(d: CheckpointDiff): string {
  const name = (t: { node_rank: number; name: string }) => (t.node_rank === 0 ? printable(t.name) : `rank-${t.node_rank}:${printable(t.name)}`);
  let out = "";
  for (const t of d.added) out += `+ ${name(t)}  ${t.dtype} ${formatShape(t.shape)}\n`;
  for (const t of d.removed) out += `- ${name(t)}  ${t.dtype} ${formatShape(t.shape)}\n`;
  for (const t of d.changed) out += `~ ${name(t)}  ${t.from.dtype} ${formatShape(t.from.shape)} -> ${t.to.dtype} ${formatShape(t.to.shape)} (${t.changes.join(", ")})\n`;
  for (const f of d.files) out += `${f.change === "added" ? "+" : f.change === "removed" ? "-" : "~"} file rank-${f.node_rank}/${printable(f.path)}${f.change === "sha256" || f.change === "size" ? ` (${f.change} differs)` : ""}\n`;
  const changedFiles = d.files.length;
  out += d.identical
    ? "identical\n"
    : `${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed tensors; ${changedFiles} file${changedFiles === 1 ? " differs" : "s differ"}\n`;
  if (d.files_without_digest > 0) out += `(${d.files_without_digest} files compared by size only: the server gave no SHA-256)\n`;
  return out;
}
