import type { Command } from "commander";
import { verifyDownload } from "../client/download-manifest.js";
import { CliError } from "./common.js";
import { jsonFlagOption, outputOption, printable, printJson } from "./output.js";

/** `ckpt verify DIR`: a downloaded tree against its manifest, offline. */
export function registerVerify(program: Command): void {
  program
    .command("verify <dir>")
    .description("check a downloaded folder against the manifest ckpt download wrote: missing, extra and changed files (offline)")
    .addOption(outputOption(["table", "json"]))
    .addOption(jsonFlagOption("json"))
    .action(async (dir: string, opts) => {
      let report;
      try {
        report = await verifyDownload(dir);
      } catch (err) {
        throw new CliError((err as Error).message);
      }
      const bad = report.missing.length + report.changed.length + report.extra.length;
      if (opts.output === "json")
        printJson({
          ok: report.ok,
          size_only: report.sizeOnly,
          missing: report.missing.map((f) => f.local_path),
          changed: report.changed.map((c) => ({ path: c.entry.local_path, reason: c.reason })),
          extra: report.extra,
        });
      else {
        for (const f of report.missing) process.stdout.write(`missing  ${printable(f.local_path)}\n`);
        for (const c of report.changed) process.stdout.write(`changed  ${printable(c.entry.local_path)}: ${c.reason}\n`);
        for (const path of report.extra) process.stdout.write(`extra    ${printable(path)}\n`);
        process.stdout.write(`${report.ok} of ${report.manifest.files.length} files verified${report.sizeOnly ? ` (${report.sizeOnly} by size only: no digest was announced; ckpt download --hash records one)` : ""}${bad ? `, ${bad} problems` : ""}\n`);
      }
      if (bad) throw new CliError(`${dir}: ${bad} files missing, changed or not in the manifest`, 1);
    });
}
