import { api, paths, type Alias, type Job, type Project } from "../api.js";
import { formatBytes, formatDate, h, replaceChildren, statusBadge, type Child } from "../dom.js";
import { confirmDialog, errorNote, loadSection, table, type PageContext } from "../page.js";
import { links } from "../router.js";

export async function renderProject(ctx: PageContext, projectId: string): Promise<void> {
  ctx.setCrumbs([{ label: projectId }]);
  ctx.setTitle("Project");
  const jobsSection = h("section", { "aria-labelledby": "jobs-title" }, h("h2", { id: "jobs-title" }, "Jobs"), h("p", { class: "muted" }, "Loading…"));
  const aliasesBody = h("div", {});
  const retentionBody = h("div", {});
  const title = h("h1", {}, "Project");
  replaceChildren(
    ctx.main,
    title,
    jobsSection,
    h("section", { "aria-labelledby": "aliases-title" }, h("h2", { id: "aliases-title" }, "Aliases"), aliasesBody),
    h("section", { "aria-labelledby": "retention-title" }, h("h2", { id: "retention-title" }, "Retention plan"), h("p", { class: "muted" }, "What the project's retention policy would delete now. Shown, never applied here."), retentionBody),
  );
  // The three requests go out together; the jobs table does not wait for the others.
  void loadSection(aliasesBody, ctx.signal, () => renderAliases(ctx, projectId), "Aliases are not available on this server.");
  void loadSection(retentionBody, ctx.signal, () => renderRetention(ctx, projectId), "Retention is not available on this server.");

  const { training_project: project, training_jobs: jobs } = await api<{ training_project: Project; training_jobs: Job[] }>(paths.jobs(projectId), { signal: ctx.signal });
  if (ctx.signal.aborted) return;
  ctx.setCrumbs([{ label: project.name }]);
  ctx.setTitle(project.name);
  replaceChildren(title, project.name, " ", h("span", { class: "muted mono small" }, project.id));
  const rows = jobs.map((job) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: links.job(project.id, job.id) }, job.name ?? job.id), job.name ? h("div", { class: "muted mono small" }, job.id) : null),
      h("td", {}, statusBadge(job.current_status)),
      h("td", {}, job.checkpoint_sync_status ? statusBadge(job.checkpoint_sync_status) : "—"),
      h("td", {}, formatDate(job.created_at)),
      h("td", {}, job.user?.email ?? "—"),
    ),
  );
  replaceChildren(
    jobsSection,
    h("h2", { id: "jobs-title" }, "Jobs"),
    table("Jobs", ["Job", "Status", "Checkpoint sync", "Created", "Created by"], rows, "No jobs in this project yet."),
  );
}

async function renderAliases(ctx: PageContext, projectId: string): Promise<Child> {
  const { aliases } = await api<{ aliases: Alias[] }>(paths.aliases(projectId), { signal: ctx.signal });
  const list = Array.isArray(aliases) ? aliases : [];
  const rows = list.map((a) => {
    const remove = h("button", { type: "button", class: "secondary small", "aria-label": `Remove alias ${a.name}` }, "Remove");
    remove.addEventListener("click", () => void removeAlias(ctx, projectId, a.name));
    return h(
      "tr",
      {},
      h("td", { class: "mono" }, `@${a.name}`),
      h("td", {}, h("a", { href: links.job(projectId, a.training_job_id), class: "mono" }, a.training_job_id)),
      h("td", {}, h("a", { href: links.files(projectId, a.training_job_id, a.checkpoint_id), class: "mono" }, a.checkpoint_id)),
      h("td", {}, formatDate(a.updated_at)),
      h("td", {}, remove),
    );
  });
  return table("Aliases", ["Alias", "Job", "Checkpoint", "Updated", ""], rows, "No aliases. Set one from a job's checkpoints.");
}

export async function removeAlias(ctx: PageContext, projectId: string, name: string): Promise<void> {
  const ok = await confirmDialog({ title: "Remove alias", message: ["Remove the alias ", h("code", {}, `@${name}`), "? Retention may then delete its checkpoint."], confirm: "Remove alias" });
  if (ok === null) return;
  try {
    await api(paths.alias(projectId, name), { method: "DELETE" });
    ctx.reload();
  } catch (err) {
    ctx.main.prepend(errorNote(err));
  }
}

/** The plan's shape is the retention feature's; render whatever lists and byte counts it has. */
async function renderRetention(ctx: PageContext, projectId: string): Promise<Child> {
  const plan = await api<unknown>(paths.retentionPlan(projectId), { signal: ctx.signal });
  const parts: Child[] = [];
  if (plan && typeof plan === "object" && !Array.isArray(plan)) {
    for (const [key, value] of Object.entries(plan as Record<string, unknown>)) {
      if (Array.isArray(value)) parts.push(h("h3", {}, humanKey(key), ` (${value.length})`), genericTable(humanKey(key), value));
      else if (typeof value === "number") parts.push(h("p", {}, h("strong", {}, humanKey(key), ": "), /bytes/i.test(key) ? formatBytes(value) : value.toLocaleString("en-US")));
      else if (typeof value === "string" || typeof value === "boolean") parts.push(h("p", {}, h("strong", {}, humanKey(key), ": "), String(value)));
    }
  } else if (Array.isArray(plan)) {
    parts.push(genericTable("Retention plan", plan));
  }
  parts.push(h("details", {}, h("summary", {}, "Raw plan (JSON)"), h("pre", { class: "json" }, JSON.stringify(plan, null, 2))));
  return parts;
}

function humanKey(key: string): string {
  const words = key.replaceAll("_", " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function genericTable(label: string, items: unknown[]): HTMLElement {
  if (items.length === 0) return h("p", { class: "muted" }, "Nothing.");
  const columns: string[] = [];
  for (const item of items.slice(0, 200))
    if (item && typeof item === "object") for (const k of Object.keys(item)) if (!columns.includes(k) && columns.length < 8) columns.push(k);
  if (columns.length === 0) return h("ul", {}, items.map((i) => h("li", { class: "mono" }, JSON.stringify(i))));
  const rows = items.map((item) =>
    h(
      "tr",
      {},
      columns.map((k) => {
        const v = (item as Record<string, unknown>)[k];
        return h("td", { class: typeof v === "number" ? "num" : undefined }, typeof v === "number" && /bytes/i.test(k) ? formatBytes(v) : typeof v === "string" ? v : v === undefined || v === null ? "—" : JSON.stringify(v));
      }),
    ),
  );
  return table(label, columns.map(humanKey), rows, "Nothing.");
}
