import { CliError } from "./common.js";

const EXIT_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Ctrl-C and SIGTERM for a long command, the same everywhere. The first signal aborts `signal`:
 * the command starts no new work, lets what is in flight end or record its resume state, and
 * exits 130 (SIGINT) or 143 (SIGTERM). A second signal exits at once with that code.
 */
export interface Interruption {
  /** Aborted by the first SIGINT or SIGTERM. */
  readonly signal: AbortSignal;
  /** The signal received, or null. */
  readonly received: NodeJS.Signals | null;
  /** The error to end the command with once it has stopped (exit code 130 or 143). */
  error(message?: string): CliError;
  /** Stops listening (the signals then have Node's default effect again). */
  dispose(): void;
}

export interface InterruptOptions {
  /** Called on the first signal, e.g. to tell the user that the command is finishing. */
  onFirst?: (signal: NodeJS.Signals) => void;
}

export function handleInterrupts(options: InterruptOptions = {}): Interruption {
  const controller = new AbortController();
  let received: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (received !== null) process.exit(EXIT_CODES[received] ?? 130);
    received = signal;
    options.onFirst?.(signal);
    controller.abort(new Error(`interrupted by ${signal}`));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return {
    signal: controller.signal,
    get received() {
      return received;
    },
    error(message = "interrupted") {
      return new CliError(message, EXIT_CODES[received ?? "SIGINT"] ?? 130);
    },
    dispose() {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    },
  };
}

/** The informational line of the first signal, through a command's reporter. */
export function finishingMessage(signal: NodeJS.Signals): string {
  return `${signal === "SIGINT" ? "Ctrl-C" : signal}: finishing what is in flight (${signal === "SIGINT" ? "Ctrl-C" : signal} again to stop now)`;
}
