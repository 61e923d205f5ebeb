/**
 * The one shape every scenario reports in, and the one place that prints and writes it.
 *
 * A row is one claim: ckpt's figure, its anchor's figure measured in the same run, and their
 * ratio. Ratios are what we compare across machines; the absolute figures depend on the box.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, freemem, totalmem } from "node:os";
import { join } from "node:path";

export interface Row {
  scenario: string;
  ckpt: number;
  anchor: number;
  unit: string;
  /** ckpt / anchor (whether bigger is better depends on the unit; `target` says which way). */
  ratio: number;
  /** The claim, e.g. ">= 0.8x nginx". */
  target?: string;
  met?: boolean;
  note?: string;
}

export interface MachineInfo {
  date: string;
  cpuModel: string;
  nproc: number;
  memory: string;
  node: string;
  kernel: string;
  /** Load average when the run started: other work on the box makes figures noisy. */
  loadAverage: string;
}

export interface RunMeta {
  quick: boolean;
  machine: MachineInfo;
  durationSeconds: number;
  /** Scenarios that were skipped or failed, with why. */
  notes: string[];
}

// --- statistics ---------------------------------------------------------------------------------

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  // Nearest rank: the value below which p of the samples fall.
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Builds a row; `met` is decided by `meets(ratio)` when a target is given. */
export function row(r: Omit<Row, "ratio" | "met"> & { ratio?: number; meets?: (ratio: number) => boolean }): Row {
  const ratio = r.ratio ?? r.ckpt / r.anchor;
  const out: Row = { scenario: r.scenario, ckpt: r.ckpt, anchor: r.anchor, unit: r.unit, ratio };
  if (r.target !== undefined) out.target = r.target;
  if (r.meets) out.met = Number.isFinite(ratio) && r.meets(ratio);
  if (r.note !== undefined) out.note = r.note;
  return out;
}

// --- machine --------------------------------------------------------------------------------------

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
}

export function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) cpuModel = m[1]!.trim();
  } catch {
    /* not Linux */
  }
  const free = sh("free", ["-h"]);
  const memLine = /^Mem:\s+(\S+)\s+(\S+)\s+(\S+)/m.exec(free);
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)}Gi`;
  return {
    date: new Date().toISOString(),
    cpuModel,
    nproc: Number(sh("nproc", [])) || cpus().length,
    memory: memLine ? `${memLine[1]} total, ${memLine[2]} used, ${memLine[3]} free (free -h)` : `${gib(totalmem())} total, ${gib(freemem())} free`,
    node: process.version,
    kernel: sh("uname", ["-r"]),
    loadAverage: (() => {
      try {
        return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
      } catch {
        return "";
      }
    })(),
  };
}

// --- formatting -----------------------------------------------------------------------------------

/** Three significant figures, thousands separated; never exponent notation. */
export function fmt(n: number): string {
  if (!Number.isFinite(n)) return "n/a";
  const abs = Math.abs(n);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return "n/a";
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;
}

function verdict(r: Row): string {
  if (r.met === undefined) return "";
  return r.met ? "met" : "MISSED";
}

const HEADERS = ["scenario", "ckpt", "anchor", "unit", "ratio", "target", "verdict"] as const;

function cells(r: Row): string[] {
  return [r.scenario, fmt(r.ckpt), fmt(r.anchor), r.unit, fmtRatio(r.ratio), r.target ?? "", verdict(r)];
}

/** A fixed-width table for the terminal; notes follow as numbered footnotes. */
export function formatTable(rows: readonly Row[]): string {
  const body = rows.map(cells);
  const widths = HEADERS.map((h, c) => Math.max(h.length, ...body.map((b) => b[c]!.length)));
  const right = new Set([1, 2, 4]);
  const line = (cs: readonly string[]) =>
    cs.map((cell, c) => (right.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join("  ").trimEnd();
  const out = [line(HEADERS), widths.map((w) => "-".repeat(w)).join("  ")];
  for (const b of body) out.push(line(b));
  const notes = rows.filter((r) => r.note);
  if (notes.length) {
    out.push("");
    for (const r of notes) out.push(`* ${r.scenario}: ${r.note}`);
  }
  return out.join("\n");
}

const mdEscape = (s: string) => s.replace(/\|/g, "\\|");

export function formatMarkdown(rows: readonly Row[], meta: RunMeta): string {
  const m = meta.machine;
  const out = [
    `Run: ${meta.quick ? "`npm run bench -- --quick`" : "`npm run bench`"} on ${m.date.slice(0, 10)}, ${Math.round(meta.durationSeconds)} s.`,
    "",
    `Machine: ${m.cpuModel}; ${m.nproc} cores (nproc); memory ${m.memory}; Node ${m.node}; Linux ${m.kernel}; load average at start ${m.loadAverage}.`,
    "",
    `| ${HEADERS.join(" | ")} | note |`,
    `| ${HEADERS.map((_, c) => (c === 1 || c === 2 || c === 4 ? "---:" : "---")).join(" | ")} | --- |`,
  ];
  for (const r of rows) out.push(`| ${cells(r).map(mdEscape).join(" | ")} | ${mdEscape(r.note ?? "")} |`);
  if (meta.notes.length) {
    out.push("");
    for (const n of meta.notes) out.push(`- ${n}`);
  }
  return out.join("\n") + "\n";
}

/** Writes `<dir>/results.json` and `<dir>/results.md`; returns their paths. */
export function writeResults(rows: readonly Row[], meta: RunMeta, dir = ".bench-out"): { json: string; md: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, "results.json");
  const md = join(dir, "results.md");
  // NaN is not JSON: a figure that could not be measured is written as null.
  writeFileSync(json, JSON.stringify({ ...meta, rows }, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n");
  writeFileSync(md, formatMarkdown(rows, meta));
  return { json, md };
}
