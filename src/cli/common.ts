import { Command, Option } from "commander";
import { ckptEnv } from "../config.js";
import { CkptClient } from "../client/api.js";
import { CkptApiError } from "../client/errors.js";
import { apiFetch } from "../client/transfer/api-fetch.js";
import type { TrainingJob, TrainingProject } from "../client/types.js";

/** A failure the user caused or can fix: printed as one line on stderr, exit code 1 (or as given). */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

export interface RemoteOptions {
  apiUrl?: string;
  apiKey?: string;
}

/** Every remote command takes the same two options, read the same way. */
export function withRemoteOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--api-url <url>", "server URL (env CKPT_API_URL; default http://127.0.0.1:8787)"))
    .addOption(new Option("--api-key <key>", "API key (env CKPT_API_KEY, falling back to BASETEN_API_KEY)"));
}

/**
 * The client every remote command uses. Its API calls go over apiFetch (node:http, an idle
 * timeout) rather than the global fetch, whose first use loads undici; `download` passes its own
 * (with its --idle-timeout).
 */
export function clientFrom(opts: RemoteOptions, rawEnv: NodeJS.ProcessEnv = process.env, fetchImpl: typeof fetch = apiFetch()): CkptClient {
  const env = ckptEnv(rawEnv);
  const apiUrl = opts.apiUrl ?? env.CKPT_API_URL ?? "http://127.0.0.1:8787";
  const apiKey = opts.apiKey ?? env.CKPT_API_KEY ?? env.BASETEN_API_KEY;
  if (!apiKey) throw new CliError("no API key: pass --api-key or set CKPT_API_KEY (or BASETEN_API_KEY)");
  try {
    new URL(apiUrl);
  } catch {
    throw new CliError(`--api-url must be an absolute URL (got '${apiUrl}')`);
  }
  return new CkptClient({ apiUrl, apiKey, fetch: fetchImpl });
}

/** `--project` takes a name or an id; `--job` defaults to the project's latest job. */
export async function resolveProjectAndJob(
  client: CkptClient,
  project: string,
  job: string | undefined,
): Promise<{ project: TrainingProject; job: TrainingJob }> {
  const resolved = await client.resolveProject(project);
  if (job) return { project: resolved, job: await client.getJob(resolved.id, job) };
  return { project: resolved, job: await client.latestJob(resolved.id) };
}

export function parseIntegerOption(name: string, min: number, max: number) {
  return (raw: string): number => {
    if (!/^[0-9]+$/.test(raw) || Number(raw) < min || Number(raw) > max)
      throw new CliError(`${name} must be an integer from ${min} to ${max} (got '${raw}')`);
    return Number(raw);
  };
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) (v /= 1024), i++;
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Left-aligned columns; the last column is not padded. */
export function table(rows: string[][]): string {
  if (rows.length === 0) return "";
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  ")).join("\n") + "\n";
}

/** Turns any error into a one-line message for stderr; never prints keys or URLs. */
export function describeError(err: unknown): string {
  if (err instanceof CliError) return err.message;
  if (err instanceof CkptApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
