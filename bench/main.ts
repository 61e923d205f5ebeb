/**
 * `npm run bench [-- --quick] [-- --only listing-depth,serving]`: every scenario against ckpt
 * and its anchor in the same run, printed as one table and written to .bench-out/results.{json,md}.
 *
 * Scenarios run one after another (never two at once: they would share the two cores). Each one
 * stops what it started; anything left (a scenario that threw, Ctrl-C) is stopped here.
 */
import { pathToFileURL } from "node:url";
import { runCleanups } from "./lib.js";
import { runListingDepthBench } from "./listing-depth.js";
import { runListingThroughputBench } from "./listing-throughput.js";
import { runMemoryBench } from "./memory.js";
import { formatTable, machineInfo, row, writeResults, type Row } from "./report.js";
import { runServingBench } from "./serving.js";
import { runUploadBench } from "./upload.js";

export type Scenario = (opts: { quick: boolean }) => Promise<Row[]>;

/** bench/download.ts is written separately; until it exists, its rows are a note. */
const runDownloadBench: Scenario = async (opts) => {
  const specifier = "./download.js"; // a variable, so the build does not require the file
  let mod: { runDownloadBench?: Scenario };
  try {
    mod = (await import(specifier)) as { runDownloadBench?: Scenario };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND" && /download\.js/.test((err as Error).message))
      return [row({ scenario: "4. download", ckpt: Number.NaN, anchor: Number.NaN, unit: "", note: "skipped: bench/download.ts does not exist yet" })];
    throw err;
  }
  if (typeof mod.runDownloadBench !== "function")
    return [row({ scenario: "4. download", ckpt: Number.NaN, anchor: Number.NaN, unit: "", note: "skipped: bench/download.ts exports no runDownloadBench" })];
  return mod.runDownloadBench(opts);
};

export const SCENARIOS: Record<string, Scenario> = {
  "listing-depth": runListingDepthBench,
  "listing-throughput": runListingThroughputBench,
  serving: runServingBench,
  download: runDownloadBench,
  upload: runUploadBench,
  memory: runMemoryBench,
};

function installSignalHandlers(): void {
  const bail = (signal: string) => {
    console.error(`\n${signal}: stopping every server and removing temp files...`);
    void runCleanups().finally(() => process.exit(130));
  };
  process.once("SIGINT", () => bail("SIGINT"));
  process.once("SIGTERM", () => bail("SIGTERM"));
}

/** Runs scenarios in order, prints the table, writes .bench-out/; returns the rows. */
export async function runScenarios(scenarios: [string, Scenario][], quick: boolean): Promise<Row[]> {
  installSignalHandlers();
  const machine = machineInfo();
  const started = performance.now();
  const rows: Row[] = [];
  const notes: string[] = [];
  console.error(`ckpt bench${quick ? " --quick" : ""}: ${machine.nproc} cores, ${machine.cpuModel}, Node ${machine.node}, load ${machine.loadAverage}`);
  try {
    for (const [name, scenario] of scenarios) {
      const t0 = performance.now();
      console.error(`-- ${name}...`);
      try {
        const got = await scenario({ quick });
        rows.push(...got);
        for (const r of got) console.error(`   ${r.scenario}: ${r.ckpt.toFixed(3)} vs ${r.anchor.toFixed(3)} ${r.unit} (${r.ratio.toFixed(2)}x)`);
      } catch (err) {
        const message = (err as Error).stack ?? String(err);
        console.error(`   ${name} FAILED: ${message}`);
        notes.push(`${name} failed: ${(err as Error).message.split("\n")[0]}`);
      }
      console.error(`   (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }
  } finally {
    await runCleanups();
  }
  const meta = { quick, machine, durationSeconds: (performance.now() - started) / 1000, notes };
  console.log(formatTable(rows));
  for (const n of notes) console.log(`! ${n}`);
  const files = writeResults(rows, meta);
  console.log(`\n(${meta.durationSeconds.toFixed(0)} s; written to ${files.json} and ${files.md})`);
  return rows;
}

/** For a scenario file run on its own: `node dist/bench/serving.js [--quick]`. */
export async function runStandalone(scenarios: Scenario[]): Promise<void> {
  await runScenarios(
    scenarios.map((s) => [s.name, s]),
    process.argv.includes("--quick"),
  );
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const argv = process.argv.slice(2);
  const quick = argv.includes("--quick");
  const onlyAt = argv.indexOf("--only");
  const only = onlyAt === -1 ? null : (argv[onlyAt + 1] ?? "").split(",").filter(Boolean);
  const unknown = (only ?? []).filter((n) => !(n in SCENARIOS));
  if (unknown.length) {
    console.error(`unknown scenario(s): ${unknown.join(", ")}; known: ${Object.keys(SCENARIOS).join(", ")}`);
    process.exit(2);
  }
  const chosen = Object.entries(SCENARIOS).filter(([name]) => only === null || only.includes(name));
  await runScenarios(chosen, quick);
}
