import { Option } from "commander";

/**
 * The one way a command talks to the person running it, on stderr. stdout is for results only
 * (tables, JSON), so `ckpt ls -o json | jq` and `2>/dev/null` work the same for every command.
 *
 * - `progress`: a status line redrawn in place, on a terminal only (never in logs or pipes);
 * - `info`: a line about what happened (a summary, a plan); not under `--quiet`;
 * - `warn`: something the user should know though the command goes on; printed even under `--quiet`.
 *
 * Errors are not reported here: a command throws, and main.ts prints `ckpt: <message>` and exits non-zero.
 */
export interface Reporter {
  readonly quiet: boolean;
  readonly interactive: boolean;
  info(line: string): void;
  warn(line: string): void;
  progress(line: string): void;
  /** Removes the progress line (before the command's last words, or an error). */
  clearProgress(): void;
}

export interface ReporterOptions {
  quiet?: boolean;
  /** Put before each line, e.g. "ckpt: " where the lines mix with a training command's output (run, sync). */
  prefix?: string;
}

/** `--quiet`, the same on every command (main.ts adds it to each command that lacks it). */
const QUIET_DESCRIPTION = "no progress and no informational lines on stderr (warnings and errors are still printed)";
export const quietOption = (): Option => new Option("-q, --quiet", QUIET_DESCRIPTION);

export function createReporter(options: ReporterOptions, stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr): Reporter {
  const quiet = options.quiet === true;
  const prefix = options.prefix ?? "";
  const interactive = stream.isTTY === true;
  let shown = false;
  const clear = (): void => {
    if (shown) stream.write("\r\x1b[K");
    shown = false;
  };
  let last = "";
  const line = (text: string): void => {
    const redraw = shown;
    clear();
    stream.write(prefix + text + "\n");
    if (redraw) progress(last);
  };
  const progress = (text: string): void => {
    last = text;
    if (quiet || !interactive) return;
    stream.write(`\r\x1b[K${text}`);
    shown = true;
  };
  return {
    quiet,
    interactive,
    info: (text) => {
      if (!quiet) line(text);
    },
    warn: (text) => line(`warning: ${text}`),
    progress,
    clearProgress: clear,
  };
}
