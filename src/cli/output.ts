import { Option } from "commander";
import { CliError } from "./common.js";

/** Names come from a server: shown on a terminal, control characters are replaced, not obeyed. */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
}

/** `-o/--output` restricted to the formats a command offers. */
export function outputOption(formats: readonly string[]): Option {
  return new Option("-o, --output <format>", "output format").choices(formats).default("table");
}

/** A JSON value on stdout, pretty-printed (the `-o json` output of listings). */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
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
