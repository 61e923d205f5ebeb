/**
 * `npm run bench [-- --quick] [-- --only listing-depth,serving]`: every scenario against ckpt
 * and its anchor in the same run, printed as one table and written to .bench-out/results.{json,md}.
 *
 * Scenarios run one after another (never two at once: they would share the two cores). Each one
 * stops what it started; anything left (a scenario that threw, Ctrl-C) is stopped here.
 * Each scenario file also runs alone: `node dist/bench/serving.js [--quick]`.
 * BENCH_CPU_PROF=<dir> makes the serving scenario's ckpt server write a V8 CPU profile there.
 */
import { pathToFileURL } from "node:url";
import { runListingDepthBench } from "./listing-depth.js";
import { runCheckpointsListingBench } from "./checkpoints-listing.js";
import { runListingThroughputBench } from "./listing-throughput.js";
import { runMemoryBench } from "./memory.js";
import { runScenarios, type Scenario } from "./run.js";
import { runDownloadBench } from "./download.js";
import { runScaleOutDownloadBench } from "./scale-out-download.js";
import { runServingBench } from "./serving.js";
import { runTransferBench } from "./transfer.js";
import { runUploadBench } from "./upload.js";
import { runInspectBench } from "./inspect.js";
import { runStartupBench } from "./startup.js";

export const SCENARIOS: Record<string, Scenario> = {
  "listing-depth": runListingDepthBench,
  "checkpoints-listing": runCheckpointsListingBench,
  "listing-throughput": runListingThroughputBench,
  serving: runServingBench,
  download: runDownloadBench,
  upload: runUploadBench,
  memory: runMemoryBench,
  inspect: runInspectBench,
  startup: runStartupBench,
  transfer: runTransferBench,
  "scale-out-download": runScaleOutDownloadBench,
};

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
