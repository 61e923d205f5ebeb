import { api, ApiError, paths, SignedOut, type Job } from "./api.js";
import { h, replaceChildren, type Child } from "./dom.js";

export interface Crumb {
  label: string;
  href?: string;
}

/** What a page gets: where to draw, when it is left (signal aborts), and the header to fill. */
export interface PageContext {
  main: HTMLElement;
  signal: AbortSignal;
  setCrumbs(crumbs: Crumb[]): void;
  setTitle(title: string): void;
  /** Renders the same URL again (after a write). */
  reload(): void;
}

export function errorNote(err: unknown): HTMLElement {
  const text = err instanceof ApiError ? (err.status === 0 ? err.message : `${err.message} (HTTP ${err.status})`) : String(err);
  return h("p", { class: "error", role: "alert" }, text);
}

/** A section that loads on its own: a 404 (route absent on this server) shows `missing`. */
export async function loadSection(
  container: HTMLElement,
  signal: AbortSignal,
  load: () => Promise<Child>,
  missing: string,
): Promise<void> {
  replaceChildren(container, h("p", { class: "muted" }, "Loading…"));
  try {
    const content = await load();
    if (!signal.aborted) replaceChildren(container, content);
  } catch (err) {
    if (signal.aborted || err instanceof SignedOut) return;
    replaceChildren(container, err instanceof ApiError && (err.status === 404 || err.status === 405) ? h("p", { class: "muted" }, missing) : errorNote(err));
  }
}

export function table(label: string, headers: string[], rows: HTMLElement[], empty: string): HTMLElement {
  if (rows.length === 0) return h("p", { class: "muted" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h("table", { "aria-label": label }, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)),
  );
}

/** A modal confirmation (native <dialog>: focus trapped, Escape cancels). Resolves the input's value, "" without input, or null. */
export function confirmDialog(options: { title: string; message: Child; confirm: string; input?: { label: string; value?: string } }): Promise<string | null> {
  return new Promise((resolve) => {
    const input = options.input ? h("input", { type: "text", id: "dialog-input", required: true, autocomplete: "off", spellcheck: "false" }) : null;
    if (input && options.input?.value) input.value = options.input.value;
    const form = h(
      "form",
      { method: "dialog" },
      h("h2", { id: "dialog-title" }, options.title),
      h("div", { class: "dialog-message" }, options.message),
      input ? h("label", { for: "dialog-input" }, options.input!.label) : null,
      input,
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { type: "submit", value: "cancel", formnovalidate: true, class: "secondary" }, "Cancel"),
        h("button", { type: "submit", value: "confirm", class: "primary" }, options.confirm),
      ),
    );
    const dialog = h("dialog", { "aria-labelledby": "dialog-title" }, form);
    document.body.appendChild(dialog);
    dialog.addEventListener("close", () => {
      const confirmed = dialog.returnValue === "confirm";
      dialog.remove();
      resolve(confirmed ? (input ? input.value.trim() : "") : null);
    });
    dialog.showModal();
    (input ?? (form.querySelector("button.primary") as HTMLElement)).focus();
  });
}

/**
 * Breadcrumbs that name the project and job (ids until the names arrive). `tail` follows the job.
 */
export function jobCrumbs(ctx: PageContext, projectId: string, jobId: string, links: { project: string; job: string }, tail: Crumb[]): void {
  ctx.setCrumbs([{ label: projectId, href: links.project }, { label: jobId, href: links.job }, ...tail]);
  void api<{ training_project: { name: string }; training_job: Job }>(paths.job(projectId, jobId), { signal: ctx.signal })
    .then(({ training_project, training_job }) => {
      if (!ctx.signal.aborted)
        ctx.setCrumbs([{ label: training_project.name, href: links.project }, { label: training_job.name ?? training_job.id, href: links.job }, ...tail]);
    })
    .catch(() => {});
}
