import { api, paths, type TensorFile, type TensorsPage } from "../api.js";
import { formatBytes, formatCount, formatParams, h, replaceChildren } from "../dom.js";
import { errorNote, jobCrumbs, table, type PageContext } from "../page.js";
import { links } from "../router.js";
import { VirtualList } from "../virtual-list.js";
import { ApiError } from "../api.js";

type Tensor = { name: string; dtype: string; shape: number[] };

const parameters = (shape: unknown): number => (Array.isArray(shape) ? shape.reduce((n: number, d) => n * (typeof d === "number" ? d : 0), 1) : 0);

export async function renderTensors(ctx: PageContext, route: { project: string; job: string; checkpoint: string; file: string | null }): Promise<void> {
  const { project: projectId, job: jobId, checkpoint: checkpointId } = route;
  jobCrumbs(ctx, projectId, jobId, { project: links.project(projectId), job: links.job(projectId, jobId) }, [
    { label: checkpointId, href: links.files(projectId, jobId, checkpointId) },
    { label: "Tensors" },
  ]);
  ctx.setTitle(`${checkpointId} tensors`);
  const summary = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const filesBody = h("div", {});
  const tensorsBody = h("section", { "aria-labelledby": "tensors-title" });
  replaceChildren(ctx.main, h("h1", {}, "Tensors of ", h("span", { class: "mono" }, checkpointId)), summary, filesBody, tensorsBody);

  // Pages of the index (offset token, as for checkpoint_files); a file's tensors may span pages.
  const byFile = new Map<string, TensorFile & { tensors: Tensor[] }>();
  let first: TensorsPage | null = null;
  let token: number | string | null = 0;
  try {
    while (token !== null && !ctx.signal.aborted) {
      const page: TensorsPage = await api<TensorsPage>(paths.tensors(projectId, jobId, checkpointId), { signal: ctx.signal, query: token === 0 ? {} : { page_token: token } });
      first ??= page;
      for (const f of Array.isArray(page.files) ? page.files : []) {
        const key = `${f.node_rank}:${f.relative_file_name}`;
        const entry = byFile.get(key) ?? { ...f, tensors: [] };
        entry.tensors.push(...(Array.isArray(f.tensors) ? f.tensors : []));
        byFile.set(key, entry);
      }
      const next = page.next_page_token;
      token = next === undefined || next === null || next === token ? null : next;
    }
  } catch (err) {
    if (ctx.signal.aborted) return;
    replaceChildren(
      summary,
      err instanceof ApiError && err.status === 404 ? h("p", { class: "muted" }, "Tensor inspection is not available for this checkpoint on this server.") : errorNote(err),
    );
    return;
  }
  if (ctx.signal.aborted || first === null) return;

  const missing = Array.isArray(first.missing_from_index) ? first.missing_from_index : [];
  replaceChildren(
    summary,
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Parameters"),
      h("dd", { title: formatCount(first.parameter_count) }, formatParams(first.parameter_count), typeof first.parameter_count === "number" ? ` (${formatCount(first.parameter_count)})` : null),
      h("dt", {}, "Bytes by dtype"),
      h("dd", {}, Object.entries(first.bytes_by_dtype ?? {}).map(([dtype, bytes]) => h("span", { class: "chip" }, `${dtype}: ${formatBytes(bytes)}`))),
      h("dt", {}, "Missing from index"),
      h("dd", {}, missing.length === 0 ? "none" : h("span", { class: "error-text" }, `${missing.length}: `, missing.slice(0, 20).map((m) => (typeof m === "string" ? m : JSON.stringify(m))).join(", "))),
    ),
  );

  const files = [...byFile.values()];
  const selected = route.file !== null ? byFile.get(route.file) : files.length === 1 ? files[0] : undefined;
  replaceChildren(
    filesBody,
    h("h2", {}, "Files"),
    table(
      "Indexed files",
      ["File", "Rank", "Format", "Parameters", "Tensors", "Error"],
      files.map((f) =>
        h(
          "tr",
          { class: f === selected ? "selected" : undefined },
          h("td", {}, h("a", { href: links.tensors(projectId, jobId, checkpointId, f), "aria-current": f === selected ? "page" : undefined }, f.relative_file_name)),
          h("td", { class: "num" }, f.node_rank),
          h("td", {}, f.format ?? "—"),
          h("td", { class: "num" }, formatParams(f.parameter_count)),
          h("td", { class: "num" }, formatCount(f.tensors.length)),
          h("td", { class: "error-text" }, f.error ?? ""),
        ),
      ),
      "No indexed files in this checkpoint.",
    ),
  );
  if (!selected) {
    if (route.file !== null) replaceChildren(tensorsBody, h("p", { class: "muted" }, "That file is not in this checkpoint's index."));
    return;
  }
  const filter = h("input", { type: "search", id: "tensor-filter", autocomplete: "off", spellcheck: "false", placeholder: "e.g. layers.0 or bf16" });
  const count = h("p", { class: "muted", role: "status" });
  let shown: Tensor[] = selected.tensors;
  const list = new VirtualList({
    label: `Tensors of ${selected.relative_file_name}`,
    rowHeight: 36,
    empty: "No tensor matches.",
    columns: [{ title: "Tensor", className: "c-name" }, { title: "Dtype", className: "c-rank" }, { title: "Shape", className: "c-shape" }, { title: "Parameters", className: "c-size" }],
    renderRow: (i) => {
      const t = shown[i]!;
      return h(
        "div",
        { class: "frow" },
        h("span", { class: "cell c-name mono", role: "cell", title: t.name }, t.name),
        h("span", { class: "cell c-rank", role: "cell" }, t.dtype),
        h("span", { class: "cell c-shape mono", role: "cell" }, `[${Array.isArray(t.shape) ? t.shape.join(", ") : ""}]`),
        h("span", { class: "cell c-size", role: "cell" }, formatCount(parameters(t.shape))),
      );
    },
  });
  const apply = (): void => {
    const q = filter.value.trim().toLowerCase();
    shown = q === "" ? selected.tensors : selected.tensors.filter((t) => t.name.toLowerCase().includes(q) || String(t.dtype).toLowerCase() === q);
    list.refresh();
    list.setCount(shown.length);
    count.textContent = `${formatCount(shown.length)} of ${formatCount(selected.tensors.length)} tensors`;
  };
  filter.addEventListener("input", apply);
  replaceChildren(
    tensorsBody,
    h("h2", { id: "tensors-title" }, "Tensors of ", h("span", { class: "mono" }, selected.relative_file_name)),
    selected.error ? h("p", { class: "error", role: "alert" }, `This file's header could not be read: ${selected.error}`) : null,
    h("div", { class: "toolbar" }, h("label", { for: "tensor-filter" }, "Filter tensors"), filter),
    count,
    list.element,
  );
  apply();
}
