/**
 * Self time per function of a V8 CPU profile (node --cpu-prof; the serving scenario writes one
 * with BENCH_CPU_PROF=<dir>), heaviest first, then summed per package or Node.js module.
 * Samples are wall-clock: on a loaded machine a preempted thread's time lands in whatever it was
 * running, so compare shares within one profile rather than milliseconds across runs.
 *
 *   node dist/bench/cpuprofile-summary.js <file.cpuprofile> [top=40]
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error("usage: cpuprofile-summary <file.cpuprofile> [top]");
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const top = Number(topArg ?? 40);
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));

const shortUrl = (url: string) => url.replace(/.*node_modules\//, "node_modules/").replace(/.*\/dist\//, "dist/");
const selfTime = new Map<string, number>();
const byArea = new Map<string, number>();
let total = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const { functionName, url, lineNumber } = nodes.get(profile.samples[i]!)!.callFrame;
  const us = profile.timeDeltas[i] ?? 0;
  total += us;
  const name = `${functionName || "(anonymous)"} ${shortUrl(url)}:${lineNumber + 1}`;
  selfTime.set(name, (selfTime.get(name) ?? 0) + us);
  const area = url.includes("node_modules/")
    ? shortUrl(url).split("/")[1]!
    : url.includes("/dist/")
      ? "ckpt"
      : url.startsWith("node:")
        ? url
        : functionName || "(native)";
  byArea.set(area, (byArea.get(area) ?? 0) + us);
}

const print = (entries: Map<string, number>, n: number) => {
  for (const [name, us] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, n))
    console.log(`${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`);
};
console.log(`${(total / 1000).toFixed(0)} ms sampled`);
print(selfTime, top);
console.log("--- by package / module");
print(byArea, 25);
