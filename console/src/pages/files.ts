import { api, paths, SignedOut, storedKey, type CheckpointFile, type FilesPage } from "../api.js";
import { formatBytes, formatCount, formatDate, h, replaceChildren } from "../dom.js";
import { errorNote, jobCrumbs, type PageContext } from "../page.js";
import { links } from "../router.js";
import { VirtualList } from "../virtual-list.js";
import { copyCommandButton } from "./job.js";

const PAGE_SIZE = 1000;

interface Folder {
  folders: Map<string, Folder>;
  files: CheckpointFile[];
  fileCount: number;
  bytes: number;
}

const newFolder = (): Folder => ({ folders: new Map(), files: [], fileCount: 0, bytes: 0 });

/**
 * A job's file listing, fetched one page of 1000 after another while the page stays usable,
 * and kept while the person browses that job's folders (moving between folders refetches
 * nothing). The listing API has no per-checkpoint filter, so each checkpoint's folder tree is
 * built from the pages as they arrive.
 */
class JobListing {
  readonly files: CheckpointFile[] = [];
  total: number | null = null;
  done = false;
  error: unknown = null;
  private readonly controller = new AbortController();
  private readonly trees = new Map<string, { root: Folder; indexed: number }>();
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly projectId: string,
    readonly jobId: string,
    /** The key it was read with: another key (after signing out and in) reads afresh. */
    readonly key: string | null,
  ) {
    void this.load();
  }

  private async load(): Promise<void> {
    let token: number | null = 0;
    try {
      while (token !== null && !this.controller.signal.aborted) {
        const page: FilesPage = await api<FilesPage>(paths.files(this.projectId, this.jobId), {
          query: { page_size: PAGE_SIZE, page_token: token },
          signal: this.controller.signal,
        });
        this.total = page.total_count;
        for (const file of page.presigned_urls) this.files.push(file);
        token = page.presigned_urls.length === 0 ? null : (page.next_page_token ?? null);
        this.emit();
      }
      this.done = true;
    } catch (err) {
      if (this.controller.signal.aborted) return;
      this.error = err;
    }
    this.emit();
  }

  stop(): void {
    this.controller.abort();
  }

  subscribe(listener: () => void, signal: AbortSignal): void {
    this.listeners.add(listener);
    signal.addEventListener("abort", () => this.listeners.delete(listener));
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }

  /** The checkpoint's folder tree, extended with the files that arrived since the last call. */
  tree(checkpointId: string): Folder {
    let entry = this.trees.get(checkpointId);
    if (!entry) this.trees.set(checkpointId, (entry = { root: newFolder(), indexed: 0 }));
    const prefix = checkpointId === "." ? null : `${checkpointId}/`;
    for (; entry.indexed < this.files.length; entry.indexed++) {
      const file = this.files[entry.indexed]!;
      const name = file.relative_file_name;
      let rest: string;
      if (prefix === null) {
        if (name.includes("/")) continue;
        rest = name;
      } else {
        if (!name.startsWith(prefix)) continue;
        rest = name.slice(prefix.length);
      }
      const segments = rest.split("/");
      let folder = entry.root;
      folder.fileCount++;
      folder.bytes += file.size_bytes;
      for (const segment of segments.slice(0, -1)) {
        let next = folder.folders.get(segment);
        if (!next) folder.folders.set(segment, (next = newFolder()));
        folder = next;
        folder.fileCount++;
        folder.bytes += file.size_bytes;
      }
      folder.files.push(file);
    }
    return entry.root;
  }
}

let cached: JobListing | null = null;

/** Drops the listing read with the key being forgotten (signing out). */
export function forgetListings(): void {
  cached?.stop();
  cached = null;
}

function listingOf(projectId: string, jobId: string): JobListing {
  const key = storedKey();
  if (cached && cached.projectId === projectId && cached.jobId === jobId && cached.key === key && cached.error === null) return cached;
  cached?.stop();
  cached = new JobListing(projectId, jobId, key);
  return cached;
}

type Row = { kind: "up"; path: string } | { kind: "folder"; name: string; path: string; folder: Folder } | { kind: "file"; file: CheckpointFile };

export async function renderFiles(ctx: PageContext, route: { project: string; job: string; checkpoint: string; path: string }): Promise<void> {
  const { project: projectId, job: jobId, checkpoint: checkpointId } = route;
  const path = route.path.replace(/^\/+|\/+$/g, "");
  jobCrumbs(ctx, projectId, jobId, { project: links.project(projectId), job: links.job(projectId, jobId) }, [{ label: checkpointId }]);
  ctx.setTitle(path === "" ? `${checkpointId} files` : `${path} · ${checkpointId} files`);

  const listing = listingOf(projectId, jobId);
  const status = h("p", { class: "muted", role: "status", id: "files-status" });
  const output = h("p", { class: "command-output", role: "status" });
  output.hidden = true;
  const segments = path === "" ? [] : path.split("/");
  const folderCrumbs = h(
    "nav",
    { class: "folder-path", "aria-label": "Folder" },
    h("a", { href: links.files(projectId, jobId, checkpointId) }, checkpointId),
    segments.map((segment, i) => [" / ", i === segments.length - 1 ? h("span", { "aria-current": "location" }, segment) : h("a", { href: links.files(projectId, jobId, checkpointId, segments.slice(0, i + 1).join("/")) }, segment)]),
  );

  // Rows are read straight from the folder (parent link, sorted subfolders, then files in upload
  // order), never copied: a folder of 100,000 files costs nothing per arriving page.
  let head: Row[] = [];
  let current: Folder | undefined;
  const rowAt = (index: number): Row => head[index] ?? { kind: "file", file: current!.files[index - head.length]! };
  const list = new VirtualList({
    label: "Files",
    rowHeight: 40,
    empty: "No files here (yet).",
    columns: [{ title: "Name", className: "c-name" }, { title: "Rank", className: "c-rank" }, { title: "Size", className: "c-size" }, { title: "Modified", className: "c-date" }, { title: "", className: "c-act" }],
    renderRow: (index) => renderRow(rowAt(index)),
  });

  const renderRow = (row: Row): HTMLElement => {
    if (row.kind === "up")
      return h("div", { class: "frow" }, h("span", { class: "cell c-name", role: "cell" }, h("a", { href: links.files(projectId, jobId, checkpointId, row.path), "aria-label": "Parent folder" }, "↰ ..")));
    if (row.kind === "folder")
      return h(
        "div",
        { class: "frow" },
        h("span", { class: "cell c-name", role: "cell" }, h("a", { href: links.files(projectId, jobId, checkpointId, row.path), class: "folder" }, row.name, "/")),
        h("span", { class: "cell c-rank muted", role: "cell" }, `${formatCount(row.folder.fileCount)} ${row.folder.fileCount === 1 ? "file" : "files"}`),
        h("span", { class: "cell c-size", role: "cell" }, formatBytes(row.folder.bytes)),
        h("span", { class: "cell c-date", role: "cell" }),
        h("span", { class: "cell c-act", role: "cell" }),
      );
    const file = row.file;
    const base = file.relative_file_name.split("/").pop() ?? file.relative_file_name;
    return h(
      "div",
      { class: "frow" },
      h("span", { class: "cell c-name", role: "cell", title: file.relative_file_name }, base),
      h("span", { class: "cell c-rank", role: "cell" }, `rank ${file.node_rank}`),
      h("span", { class: "cell c-size", role: "cell" }, formatBytes(file.size_bytes)),
      h("span", { class: "cell c-date", role: "cell" }, formatDate(file.last_modified)),
      h(
        "span",
        { class: "cell c-act", role: "cell" },
        h("a", { href: file.url, download: base, rel: "noreferrer", "aria-label": `Download ${file.relative_file_name} (rank ${file.node_rank})` }, "Download"),
        file.relative_file_name.endsWith(".safetensors") ? h("a", { href: links.tensors(projectId, jobId, checkpointId, file), "aria-label": `Tensors of ${file.relative_file_name}` }, "Tensors") : null,
      ),
    );
  };

  let shownFiles = -1;
  let shownFolders = -1;
  const update = (): void => {
    let folder: Folder | undefined = listing.tree(checkpointId);
    for (const segment of segments) folder = folder?.folders.get(segment);
    const folderCount = folder?.folders.size ?? 0;
    const changed = folderCount !== shownFolders || (folder?.files.length ?? 0) < shownFiles;
    if (changed) {
      head = [];
      if (segments.length > 0) head.push({ kind: "up", path: segments.slice(0, -1).join("/") });
      if (folder)
        for (const [name, child] of [...folder.folders].sort(([a], [b]) => a.localeCompare(b)))
          head.push({ kind: "folder", name, path: [...segments, name].join("/"), folder: child });
    }
    current = folder;
    // Rows only ever get appended while pages arrive, except when a new folder sorts in.
    if (changed || head.length > (segments.length > 0 ? 1 : 0)) list.refresh();
    shownFolders = folderCount;
    shownFiles = folder?.files.length ?? 0;
    list.setCount(head.length + (folder?.files.length ?? 0));
    const here = folder ? `${formatCount(folder.fileCount)} files (${formatBytes(folder.bytes)}) in this folder` : "This folder has no files (yet)";
    const progress =
      listing.error !== null
        ? ""
        : listing.done
          ? ` · all ${formatCount(listing.files.length)} files of the job read`
          : ` · reading the job's file list: ${formatCount(listing.files.length)} of ${listing.total === null ? "?" : formatCount(listing.total)}…`;
    status.textContent = here + progress;
    if (listing.error !== null && !(listing.error instanceof SignedOut) && !errorShown) {
      errorShown = true;
      status.after(errorNote(listing.error));
    }
  };
  let errorShown = false;

  replaceChildren(
    ctx.main,
    h("h1", {}, "Files of ", h("span", { class: "mono" }, checkpointId)),
    h(
      "div",
      { class: "toolbar" },
      copyCommandButton(projectId, jobId, checkpointId, output),
      h("a", { href: links.tensors(projectId, jobId, checkpointId) }, "Tensors of this checkpoint"),
    ),
    output,
    folderCrumbs,
    status,
    list.element,
  );
  listing.subscribe(update, ctx.signal);
  update();
}
