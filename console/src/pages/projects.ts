import { api, paths, type Project } from "../api.js";
import { formatDate, h, replaceChildren, statusBadge } from "../dom.js";
import { table, type PageContext } from "../page.js";
import { links } from "../router.js";

export async function renderProjects(ctx: PageContext): Promise<void> {
  ctx.setCrumbs([]);
  ctx.setTitle("Projects");
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  replaceChildren(ctx.main, h("h1", {}, "Projects"), body);
  const { training_projects: projects } = await api<{ training_projects: Project[] }>(paths.projects(), { signal: ctx.signal });
  if (ctx.signal.aborted) return;
  const rows = projects.map((p) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: links.project(p.id) }, p.name)),
      h("td", { class: "mono" }, p.id),
      h("td", {}, p.latest_job ? [statusBadge(p.latest_job.current_status), " ", h("a", { href: links.job(p.id, p.latest_job.id), class: "mono" }, p.latest_job.name ?? p.latest_job.id)] : "—"),
      h("td", {}, formatDate(p.created_at)),
      h("td", {}, formatDate(p.updated_at)),
    ),
  );
  replaceChildren(body, table("Projects", ["Name", "Id", "Latest job", "Created", "Updated"], rows, "No projects yet. Create one with `ckpt projects create NAME`."));
}
