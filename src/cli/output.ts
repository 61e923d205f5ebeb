import { InvalidArgumentError, Option } from "commander";
import { CliError } from "./common.js";

/** Names come from a server: shown on a terminal, control characters are replaced, not obeyed. */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
}

export type OutputFormat = "table" | "json" | "jsonl";

/** Every listing offers these three: a table for people, one JSON document, or one JSON object per line. */
const LISTING_FORMATS: readonly OutputFormat[] = ["table", "json", "jsonl"];

/**
 * `-o/--output`, the same option on every command that prints a result: `table` (the default),
 * `json` or `jsonl`, restricted to the formats the command offers. `aliases` keeps an old
 * spelling working (gc's `-o text` is `-o table`).
 */
export function outputOption(formats: readonly OutputFormat[] = LISTING_FORMATS, aliases: Record<string, OutputFormat> = {}): Option {
  return new Option("-o, --output <format>", `output format: ${formats.join(", ")}`).default("table").argParser((raw: string) => {
    const format = aliases[raw] ?? raw;
    if (!(formats as readonly string[]).includes(format)) throw new InvalidArgumentError(`Allowed choices are ${formats.join(", ")}.`);
    return format;
  });
}

/** An old `--json` flag, kept as another spelling of `-o <format>`. */
export function jsonFlagOption(format: OutputFormat, description = `same as -o ${format}`): Option {
  return new Option("--json", description).implies({ output: format });
}

/** A JSON value on stdout, pretty-printed (the `-o json` output of listings). */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

/** One JSON object per line on stdout (the `-o jsonl` output of listings). */
export function printJsonLines(items: readonly unknown[]): void {
  process.stdout.write(items.map((item) => JSON.stringify(item) + "\n").join(""));
}

/**
 * A listing in the format asked for: `json` is the array, `jsonl` one element per line,
 * `table` whatever `render` makes of it.
 */
export function printListing<T>(format: string, items: readonly T[], render: (items: readonly T[]) => string): void {
  if (format === "json") return printJson(items);
  if (format === "jsonl") return printJsonLines(items);
  process.stdout.write(render(items));
}

/** "64MiB", "1.5G", "65536": a byte count for tuning options. */
export function parseByteSize(name: string) {
  return (raw: string): number => {
    const m = /^([0-9]+(?:\.[0-9]+)?)\s*(k|ki|kib|kb|m|mi|mib|mb|g|gi|gib|gb)?$/i.exec(raw.trim());
    if (!m) throw new CliError(`${name} must be a size such as 64MiB or 1GiB (got '${raw}')`);
    const unit = (m[2] ?? "").toLowerCase()[0];
    const factor = unit === "k" ? 1 << 10 : unit === "m" ? 1 << 20 : unit === "g" ? 1 << 30 : 1;
    return Math.round(Number(m[1]) * factor);
  };
}

export function collectInteger(name: string, min: number, max: number) {
  return (raw: string, previous: number[] = []): number[] => {
    if (!/^[0-9]+$/.test(raw) || Number(raw) < min || Number(raw) > max)
      throw new CliError(`${name} must be an integer from ${min} to ${max} (got '${raw}')`);
    return [...previous, Number(raw)];
  };
}

/**
 * `ckpt ls -o jsonl | head` closes our stdout early: that is the reader being done, not an
 * error, so the command ends quietly instead of crashing with EPIPE.
 */
export function exitQuietlyOnBrokenPipe(): void {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
}
