import { api, ApiError, paths, type Job, type LogLine } from "../api.js";
import { h, replaceChildren } from "../dom.js";
import { errorNote, jobCrumbs, type PageContext } from "../page.js";
import { links } from "../router.js";
import { VirtualList } from "../virtual-list.js";

/** Baseten's LogV1 timestamps are epoch nanoseconds as a string. */
function logTime(timestamp: string): string {
  if (!/^\d+$/.test(timestamp)) return timestamp;
  const ms = Number(BigInt(timestamp) / 1_000_000n);
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? timestamp : date.toISOString().replace("T", " ").replace("Z", "");
}

function compareTimestamps(a: string, b: string): number {
  const x = String(a).padStart(20, "0");
  const y = String(b).padStart(20, "0");
  return x < y ? -1 : x > y ? 1 : 0;
}

export async function renderLogs(ctx: PageContext, projectId: string, jobId: string): Promise<void> {
  jobCrumbs(ctx, projectId, jobId, { project: links.project(projectId), job: links.job(projectId, jobId) }, [{ label: "Logs" }]);
  ctx.setTitle("Logs");
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  replaceChildren(ctx.main, h("h1", {}, "Logs of ", h("span", { class: "mono" }, jobId)), body);
  let logs: LogLine[];
  try {
    // The newest 1000 lines of the job's life (Baseten's window is at most 7 days), shown oldest first.
    const { training_job: job } = await api<{ training_job: Job }>(paths.job(projectId, jobId), { signal: ctx.signal });
    const end = Date.now();
    const created = Date.parse(job.created_at);
    const start = Math.max(Number.isNaN(created) ? 0 : created - 60_000, end - 7 * 24 * 3600 * 1000 + 1000);
    ({ logs } = await api<{ logs: LogLine[] }>(paths.logs(projectId, jobId), {
      signal: ctx.signal,
      query: { start_epoch_millis: start, end_epoch_millis: end, direction: "desc", limit: 1000 },
    }));
    logs = Array.isArray(logs) ? [...logs].sort((a, b) => compareTimestamps(a.timestamp, b.timestamp)) : [];
  } catch (err) {
    if (ctx.signal.aborted) return;
    replaceChildren(body, err instanceof ApiError && err.status === 404 ? h("p", { class: "muted" }, "This server keeps no logs for this job.") : errorNote(err));
    return;
  }
  if (ctx.signal.aborted) return;
  const all = logs;
  const filter = h("input", { type: "search", id: "log-filter", autocomplete: "off", spellcheck: "false" });
  const count = h("p", { class: "muted", role: "status" });
  let shown = all;
  const list = new VirtualList({
    label: "Log lines",
    rowHeight: 28,
    empty: "No log lines.",
    columns: [{ title: "Time", className: "c-date" }, { title: "Level", className: "c-rank" }, { title: "Replica", className: "c-rank" }, { title: "Message", className: "c-name" }],
    renderRow: (i) => {
      const line = shown[i]!;
      return h(
        "div",
        { class: "frow log" },
        h("span", { class: "cell c-date mono", role: "cell" }, logTime(String(line.timestamp))),
        h("span", { class: `cell c-rank level-${String(line.level ?? "none").toLowerCase()}`, role: "cell" }, line.level ?? ""),
        h("span", { class: "cell c-rank mono", role: "cell" }, line.replica ?? ""),
        h("span", { class: "cell c-name mono", role: "cell", title: String(line.message) }, String(line.message)),
      );
    },
  });
  const apply = (): void => {
    const q = filter.value.trim().toLowerCase();
    shown = q === "" ? all : all.filter((l) => String(l.message).toLowerCase().includes(q));
    list.refresh();
    list.setCount(shown.length);
    count.textContent = `${shown.length} of ${all.length} lines`;
  };
  filter.addEventListener("input", apply);
  replaceChildren(body, h("div", { class: "toolbar" }, h("label", { for: "log-filter" }, "Filter log lines"), filter), count, list.element);
  apply();
}
