/**
 * Runs scenarios in order, prints the table and writes .bench-out/; used by bench/main.ts and by
 * each scenario file run on its own. No scenario is imported here (they import this).
 */
import { runCleanups } from "./lib.js";
import { formatTable, machineInfo, writeResults, type Row } from "./report.js";

export type Scenario = (opts: { quick: boolean }) => Promise<Row[]>;

/** Ctrl-C, a kill, or an error nobody awaited: stop every server and remove temp files first. */
function installExitHandlers(): void {
  const bail = (why: string, code: number) => {
    console.error(`\n${why}: stopping every server and removing temp files...`);
    void runCleanups().finally(() => process.exit(code));
  };
  process.once("SIGINT", () => bail("SIGINT", 130));
  process.once("SIGTERM", () => bail("SIGTERM", 143));
  process.once("uncaughtException", (err) => bail(`uncaught ${err.stack ?? err}`, 1));
  process.once("unhandledRejection", (err) => bail(`unhandled rejection ${(err as Error)?.stack ?? String(err)}`, 1));
}

/** Runs scenarios in order, prints the table, writes .bench-out/; returns the rows. */
export async function runScenarios(scenarios: [string, Scenario][], quick: boolean): Promise<Row[]> {
  installExitHandlers();
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
