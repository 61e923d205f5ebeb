import { Option, type Command } from "commander";
import { inspectCheckpoint, type CheckpointInspection } from "../client/inspect-checkpoint.js";
import { resolveCheckpointTarget } from "./checkpoint-ref.js";
import { clientFrom, formatBytes, parseIntegerOption, table, withRemoteOptions } from "./common.js";
import { outputOption, printable, printJson, printJsonLines } from "./output.js";

export const viaOption = () =>
  new Option("--via <how>", "extension: ckpt's tensors route; range: read headers through presigned URLs (any server, Baseten too); auto: the route, else range")
    .choices(["auto", "extension", "range"])
    .default("auto");

const grouped = (n: number) => n.toLocaleString("en-US");
export const formatShape = (shape: number[]) => `[${shape.join(", ")}]`;

/** 8030261248 → "8.03B": how ML engineers say parameter counts. */
function formatParameters(n: number): string {
  for (const [unit, size] of [["T", 1e12], ["B", 1e9], ["M", 1e6], ["K", 1e3]] as const) if (n >= size) return `${(n / size).toFixed(2)}${unit}`;
  return String(n);
}

export function registerInspect(program: Command): void {
  withRemoteOptions(
    program
      .command("inspect")
      .description("what a checkpoint holds (tensor names, dtypes, shapes, parameters) without downloading it")
      .requiredOption("--project <nameOrId>", "training project (name or id)")
      .option("--job <id>", "training job id (default: the project's latest job)")
      .option("--checkpoint <id>", "checkpoint id, or latest", "latest")
      .option("--file <name>", "only this file (its relative_file_name)")
      .option("--concurrency <n>", "headers read at once in the Range fallback", parseIntegerOption("--concurrency", 1, 64), 8)
      .addOption(viaOption())
      .addOption(outputOption()),
  ).action(async (opts) => {
    const client = clientFrom(opts);
    const { projectId, jobId, checkpointId } = await resolveCheckpointTarget(client, opts.project, opts.job, opts.checkpoint);
    const inspection = await inspectCheckpoint(client, { projectId, jobId, checkpointId, fileName: opts.file, via: opts.via, concurrency: opts.concurrency });
    if (opts.output === "json") return printJson({ training_job_id: jobId, ...inspection });
    // One line per tensor, each naming its file: `ckpt inspect -o jsonl | jq 'select(.dtype == "F32")'`.
    if (opts.output === "jsonl")
      return printJsonLines(
        inspection.files.flatMap((f) =>
          f.tensors.map((t) => ({ training_job_id: jobId, checkpoint_id: inspection.checkpoint_id, node_rank: f.node_rank, relative_file_name: f.relative_file_name, ...t })),
        ),
      );
    process.stdout.write(renderInspection(inspection));
  });
}

function renderInspection(x: CheckpointInspection): string {
  const tensorFiles = x.files.filter((f) => f.tensors.length > 0);
  const withFile = tensorFiles.length > 1;
  const rows = [["TENSOR", "DTYPE", "SHAPE", "PARAMETERS", ...(withFile ? ["FILE"] : [])]];
  for (const f of tensorFiles)
    for (const t of f.tensors)
      rows.push([printable(t.name), t.dtype, formatShape(t.shape), grouped(t.parameters), ...(withFile ? [`rank-${f.node_rank}/${printable(f.relative_file_name)}`] : [])]);
  let out = rows.length > 1 ? table(rows) : "";
  const dtypes = Object.entries(x.bytes_by_dtype)
    .sort((a, b) => b[1] - a[1])
    .map(([d, b]) => `${d} ${formatBytes(b)}`)
    .join(", ");
  const safetensors = x.files.filter((f) => f.format === "safetensors").length;
  const params = x.parameter_count === null ? "no readable safetensors" : `${grouped(x.parameter_count)} parameters (${formatParameters(x.parameter_count)})`;
  out += `${x.checkpoint_id}: ${grouped(x.tensor_count)} tensors, ${params} in ${safetensors} safetensors file${safetensors === 1 ? "" : "s"}${dtypes ? `; ${dtypes}` : ""}\n`;
  for (const i of x.indexes)
    out += `index rank-${i.node_rank}/${printable(i.relative_file_name)}: ${i.error ? `unreadable (${printable(i.error)})` : `${grouped(i.found)} of ${grouped(i.tensor_count)} tensors found, ${grouped(i.missing)} missing`}\n`;
  for (const m of x.missing_from_index) out += `  missing ${printable(m.name)} (${m.reason}: ${printable(m.shard)})\n`;
  for (const f of x.files) if (f.error) out += `error: rank-${f.node_rank}/${printable(f.relative_file_name)}: ${printable(f.error)}\n`;
  return out;
}
