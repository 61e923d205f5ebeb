import type { Command } from "commander";
import type { RetentionPolicy } from "../client/types.js";
import { parseDuration } from "../domain/retention.js";
import { CliError, clientFrom, formatBytes, parseIntegerOption, table, withRemoteOptions } from "./common.js";
import { outputOption, printable, printJson, printJsonLines } from "./output.js";

/** `ckpt retention`: a per-project policy, a plan of what it deletes, and applying exactly that plan. */
export function registerRetention(program: Command): void {
  const retention = program.command("retention").description("which checkpoints a project keeps: set a policy, plan, apply");
  const withProject = (cmd: Command) => withRemoteOptions(cmd.requiredOption("--project <nameOrId>", "training project (name or id)"));

  withProject(
    retention
      .command("set")
      .description("set the policy (options not given are cleared); pinned, aliased, each job's newest COMPLETE and WRITING checkpoints are always kept")
      .option("--keep-last <n>", "keep the newest N COMPLETE checkpoints of each job", parseIntegerOption("--keep-last", 0, 1_000_000))
      .option("--keep-best <n>", "keep the best N of each job by --metric", parseIntegerOption("--keep-best", 0, 1_000_000))
      .option("--metric <name>", "trainer_state.json log_history key for --keep-best (default eval_loss)")
      .option("--mode <min|max>", "direction of --metric (default: min for losses and errors, max otherwise)")
      .option("--max-age <age>", "keep checkpoints younger than this: 14d, 36h, 90m, 3600s")
      .option("--auto", "the server applies the policy each time a checkpoint completes")
      .addOption(outputOption()),
  ).action(async (opts) => {
    if (opts.mode !== undefined && opts.mode !== "min" && opts.mode !== "max") throw new CliError("--mode must be min or max");
    let maxAge: number | null = null;
    if (opts.maxAge !== undefined) {
      maxAge = parseDuration(opts.maxAge);
      if (maxAge === null) throw new CliError(`--max-age must be a duration such as 14d, 36h or 90m (got '${opts.maxAge}')`);
    }
    const client = clientFrom(opts);
    const policy = await client.putRetentionPolicy((await client.resolveProject(opts.project)).id, {
      keep_last: opts.keepLast ?? null,
      keep_best: opts.keepBest ?? null,
      metric: opts.keepBest !== undefined ? (opts.metric ?? "eval_loss") : null,
      mode: opts.mode ?? null,
      max_age_seconds: maxAge,
      auto: opts.auto === true,
    });
    printPolicy(policy, opts.output);
  });

  withProject(retention.command("show").description("the project's policy").addOption(outputOption())).action(async (opts) => {
    const client = clientFrom(opts);
    printPolicy(await client.getRetentionPolicy((await client.resolveProject(opts.project)).id), opts.output);
  });

  withProject(retention.command("plan").description("exactly what applying the policy now deletes, and the bytes it frees").addOption(outputOption())).action(
    async (opts) => {
      const client = clientFrom(opts);
      const plan = await client.planRetention((await client.resolveProject(opts.project)).id);
      if (opts.output === "json") return printJson(plan);
      if (opts.output === "jsonl") return printJsonLines(plan.delete);
      if (plan.delete.length === 0) process.stdout.write("nothing to delete\n");
      else
        process.stdout.write(
          table([
            ["JOB", "CHECKPOINT", "STATE", "SIZE", "FILES", "CREATED"],
            ...plan.delete.map((c) => [c.training_job_id, printable(c.checkpoint_id), c.state, formatBytes(c.size_bytes), String(c.file_count), c.created_at]),
          ]) + `${plan.delete.length} checkpoints, ${formatBytes(plan.bytes_freed)} freed; ${plan.keep.length} kept\n`,
        );
    },
  );

  withProject(
    retention
      .command("apply")
      .description("delete what `retention plan` lists now (and nothing it does not)")
      .addOption(outputOption()),
  ).action(async (opts) => {
    const client = clientFrom(opts);
    const projectId = (await client.resolveProject(opts.project)).id;
    const plan = await client.planRetention(projectId);
    const result = await client.applyRetention(
      projectId,
      plan.delete.map((c) => ({ training_job_id: c.training_job_id, checkpoint_id: c.checkpoint_id })),
    );
    if (opts.output === "json") return printJson(result);
    if (opts.output === "jsonl") return printJsonLines(result.deleted);
    for (const c of result.deleted) process.stdout.write(`deleted ${c.training_job_id} ${printable(c.checkpoint_id)} (${formatBytes(c.size_bytes)})\n`);
    process.stdout.write(`${result.deleted.length} checkpoints deleted, ${formatBytes(result.bytes_freed)} freed\n`);
  });
}

function printPolicy(policy: RetentionPolicy, output: string): void {
  if (output === "json") return printJson(policy);
  if (output === "jsonl") return printJsonLines([policy]);
  const show = (v: unknown) => (v === null ? "-" : String(v));
  process.stdout.write(
    table([
      ["RULE", "VALUE"],
      ["keep-last", show(policy.keep_last)],
      ["keep-best", policy.keep_best === null ? "-" : `${policy.keep_best} by ${policy.metric}${policy.mode ? ` (${policy.mode})` : ""}`],
      ["max-age", policy.max_age_seconds === null ? "-" : `${policy.max_age_seconds}s`],
      ["auto", policy.auto ? "yes" : "no"],
    ]),
  );
}
