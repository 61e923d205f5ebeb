import { api, ApiError, paths, type Checkpoint, type Job, type LogLine } from "../api.js";
import { announce, formatBytes, formatCount, formatDate, formatParams, h, replaceChildren, shellWord, statusBadge } from "../dom.js";
import { confirmDialog, errorNote, table, type PageContext } from "../page.js";
import { links } from "../router.js";
import { removeAlias } from "./project.js";

/**
 * The exact command that downloads one checkpoint (the key comes from the environment, never from
 * here). `ckpt download` refuses a checkpoint that is not COMPLETE, so the command for one the
 * server reports WRITING or INCOMPLETE says --allow-partial, as the person looking at it chose it.
 */
export function downloadCommand(projectId: string, jobId: string, checkpointId: string, state?: string): string {
  const words = ["ckpt", "download", "--api-url", location.origin, "--project", projectId, "--job", jobId, "--checkpoint", checkpointId];
  if (state !== undefined && state !== "COMPLETE") words.push("--allow-partial");
  return words.map(shellWord).join(" ");
}

export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

export function copyCommandButton(projectId: string, jobId: string, checkpointId: string, output: HTMLElement, state?: string): HTMLButtonElement {
  const button = h("button", { type: "button", class: "secondary small copy-command", "aria-label": `Copy download command for ${checkpointId}` }, "Copy download command");
  button.addEventListener("click", async () => {
    const command = downloadCommand(projectId, jobId, checkpointId, state);
    const copied = await copyText(command);
    replaceChildren(output, copied ? "Copied: " : "Copy this command: ", h("code", { class: "command" }, command));
    output.hidden = false;
    announce(copied ? "Download command copied" : "Could not copy; the command is shown");
  });
  return button;
}

export async function renderJob(ctx: PageContext, projectId: string, jobId: string): Promise<void> {
  ctx.setCrumbs([{ label: projectId, href: links.project(projectId) }, { label: jobId }]);
  ctx.setTitle("Job");
  replaceChildren(ctx.main, h("h1", {}, "Job"), h("p", { class: "muted" }, "Loading…"));
  const logsLink = h("p", { class: "muted" });
  void probeLogs(ctx, projectId, jobId, logsLink);
  const [{ training_project: project }, { training_job: job, checkpoints }] = await Promise.all([
    api<{ training_project: { id: string; name: string } }>(paths.project(projectId), { signal: ctx.signal }),
    api<{ training_job: Job; checkpoints: Checkpoint[] }>(paths.checkpoints(projectId, jobId), { signal: ctx.signal }),
  ]);
  if (ctx.signal.aborted) return;
  ctx.setCrumbs([{ label: project.name, href: links.project(project.id) }, { label: job.name ?? job.id }]);
  ctx.setTitle(job.name ?? job.id);

  const output = h("p", { class: "command-output", role: "status" });
  output.hidden = true;
  const rows = checkpoints.map((c) => checkpointRow(ctx, project.id, job.id, c, output));
  replaceChildren(
    ctx.main,
    h("h1", {}, job.name ?? job.id, " ", h("span", { class: "muted mono small" }, job.id)),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Status"),
      h("dd", {}, statusBadge(job.current_status)),
      h("dt", {}, "Checkpoint sync"),
      h("dd", {}, job.checkpoint_sync_status ? statusBadge(job.checkpoint_sync_status) : "—"),
      h("dt", {}, "Created"),
      h("dd", {}, formatDate(job.created_at)),
      h("dt", {}, "Created by"),
      h("dd", {}, job.user?.email ?? "—"),
      job.error_message ? [h("dt", {}, "Error"), h("dd", { class: "error-text" }, job.error_message)] : null,
    ),
    logsLink,
    h("h2", {}, "Checkpoints"),
    output,
    table("Checkpoints", ["Checkpoint", "State", "Aliases", "Size", "Parameters", "Files", "Created", "Actions"], rows, "No checkpoints yet: nothing has been uploaded to this job."),
  );
}

function checkpointRow(ctx: PageContext, projectId: string, jobId: string, c: Checkpoint, output: HTMLElement): HTMLElement {
  const aliases = Array.isArray(c.aliases) ? c.aliases : [];
  const aliasChips = aliases.map((name) => {
    const remove = h("button", { type: "button", class: "chip-remove", "aria-label": `Remove alias ${name}` }, "×");
    remove.addEventListener("click", () => void removeAlias(ctx, projectId, name));
    return h("span", { class: "chip" }, `@${name}`, remove);
  });
  const setAlias = h("button", { type: "button", class: "secondary small", "aria-label": `Set alias on ${c.checkpoint_id}` }, "Set alias…");
  setAlias.addEventListener("click", () => void doSetAlias(ctx, projectId, jobId, c.checkpoint_id));
  const pinControl =
    c.pinned === undefined
      ? null
      : (() => {
          const button = h("button", { type: "button", class: "secondary small", "aria-label": `${c.pinned ? "Unpin" : "Pin"} ${c.checkpoint_id}` }, c.pinned ? "Unpin" : "Pin");
          button.addEventListener("click", () => void togglePin(ctx, projectId, jobId, c));
          return button;
        })();
  return h(
    "tr",
    {},
    h("td", {}, h("a", { href: links.files(projectId, jobId, c.checkpoint_id), class: "mono" }, c.checkpoint_id), c.pinned ? h("span", { class: "chip pin", title: "Pinned: never deleted by retention" }, "pinned") : null),
    h("td", { title: c.completed_at ? `complete since ${c.completed_at}` : undefined }, c.state ? statusBadge(c.state) : "—"),
    h("td", {}, aliasChips.length > 0 ? aliasChips : "—"),
    h("td", { class: "num" }, formatBytes(c.size_bytes)),
    h("td", { class: "num", title: typeof c.parameter_count === "number" ? formatCount(c.parameter_count) : undefined }, formatParams(c.parameter_count)),
    h("td", { class: "num" }, formatCount(c.file_count)),
    h("td", {}, formatDate(c.created_at)),
    h(
      "td",
      {},
      h(
        "div",
        { class: "actions" },
        h("a", { href: links.files(projectId, jobId, c.checkpoint_id) }, "Files"),
      h("a", { href: links.tensors(projectId, jobId, c.checkpoint_id) }, "Tensors"),
      copyCommandButton(projectId, jobId, c.checkpoint_id, output, c.state),
        setAlias,
        pinControl,
      ),
    ),
  );
}

async function doSetAlias(ctx: PageContext, projectId: string, jobId: string, checkpointId: string): Promise<void> {
  const name = await confirmDialog({
    title: "Set alias",
    message: ["Point an alias at ", h("code", {}, checkpointId), ". An alias of that name elsewhere in the project moves here."],
    confirm: "Set alias",
    input: { label: "Alias name" },
  });
  if (name === null || name === "") return;
  try {
    await api(paths.alias(projectId, name.replace(/^@/, "")), { method: "PUT", body: { training_job_id: jobId, checkpoint_id: checkpointId } });
    announce(`Alias ${name} set`);
    ctx.reload();
  } catch (err) {
    ctx.main.prepend(errorNote(err));
  }
}

async function togglePin(ctx: PageContext, projectId: string, jobId: string, c: Checkpoint): Promise<void> {
  const pin = !c.pinned;
  const ok = await confirmDialog({
    title: pin ? "Pin checkpoint" : "Unpin checkpoint",
    message: pin ? ["Pin ", h("code", {}, c.checkpoint_id), "? Retention never deletes a pinned checkpoint."] : ["Unpin ", h("code", {}, c.checkpoint_id), "? Retention may then delete it."],
    confirm: pin ? "Pin" : "Unpin",
  });
  if (ok === null) return;
  try {
    await api(paths.pin(projectId, jobId, c.checkpoint_id), { method: pin ? "PUT" : "DELETE" });
    ctx.reload();
  } catch (err) {
    ctx.main.prepend(errorNote(err));
  }
}

async function probeLogs(ctx: PageContext, projectId: string, jobId: string, target: HTMLElement): Promise<void> {
  try {
    // Any line in the last 7 days (the widest window Baseten's API allows).
    const end = Date.now();
    const { logs } = await api<{ logs: LogLine[] }>(paths.logs(projectId, jobId), {
      signal: ctx.signal,
      query: { start_epoch_millis: end - 7 * 24 * 3600 * 1000 + 1000, end_epoch_millis: end, limit: 1 },
    });
    if (ctx.signal.aborted) return;
    replaceChildren(target, Array.isArray(logs) && logs.length > 0 ? h("a", { href: links.logs(projectId, jobId) }, "Job logs") : "This job has no logs.");
  } catch (err) {
    if (ctx.signal.aborted) return;
    replaceChildren(target, err instanceof ApiError && err.status === 404 ? "" : "Logs could not be read.");
  }
}
