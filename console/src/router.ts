/** History-API routes under /console/: every page has its own URL and the back button works. */
export const BASE = "/console/";

export type Route =
  | { page: "projects" }
  | { page: "project"; project: string }
  | { page: "job"; project: string; job: string }
  | { page: "logs"; project: string; job: string }
  | { page: "files"; project: string; job: string; checkpoint: string; path: string }
  | { page: "tensors"; project: string; job: string; checkpoint: string; file: string | null }
  | { page: "not-found" };

const enc = encodeURIComponent;

// Checkpoint ids and folder paths go in the query string: a checkpoint named "." (root files)
// would be a dot segment in a path, which every URL parser removes.
export const links = {
  projects: () => BASE,
  project: (p: string) => `${BASE}projects/${enc(p)}`,
  job: (p: string, j: string) => `${BASE}projects/${enc(p)}/jobs/${enc(j)}`,
  logs: (p: string, j: string) => `${BASE}projects/${enc(p)}/jobs/${enc(j)}/logs`,
  files: (p: string, j: string, c: string, path = "") =>
    `${BASE}projects/${enc(p)}/jobs/${enc(j)}/files?${new URLSearchParams(path === "" ? { checkpoint: c } : { checkpoint: c, path })}`,
  tensors: (p: string, j: string, c: string, file?: { node_rank: number; relative_file_name: string }) =>
    `${BASE}projects/${enc(p)}/jobs/${enc(j)}/tensors?${new URLSearchParams(
      file ? { checkpoint: c, file: `${file.node_rank}:${file.relative_file_name}` } : { checkpoint: c },
    )}`,
};

export function parseRoute(url: URL): Route {
  if (!url.pathname.startsWith(BASE)) return { page: "not-found" };
  let parts: string[];
  try {
    parts = url.pathname.slice(BASE.length).split("/").filter((s) => s !== "").map(decodeURIComponent);
  } catch {
    return { page: "not-found" };
  }
  const q = url.searchParams;
  if (parts.length === 0) return { page: "projects" };
  if (parts[0] !== "projects" || parts.length < 2) return { page: "not-found" };
  const project = parts[1]!;
  if (parts.length === 2) return { page: "project", project };
  if (parts[2] !== "jobs" || parts.length < 4) return { page: "not-found" };
  const job = parts[3]!;
  if (parts.length === 4) return { page: "job", project, job };
  if (parts.length === 5 && parts[4] === "logs") return { page: "logs", project, job };
  const checkpoint = q.get("checkpoint");
  if (parts.length === 5 && parts[4] === "files" && checkpoint !== null) return { page: "files", project, job, checkpoint, path: q.get("path") ?? "" };
  if (parts.length === 5 && parts[4] === "tensors" && checkpoint !== null) return { page: "tensors", project, job, checkpoint, file: q.get("file") };
  return { page: "not-found" };
}

let renderCurrent: () => void = () => {};

export function onNavigate(render: () => void): void {
  renderCurrent = render;
  window.addEventListener("popstate", () => renderCurrent());
  // Same-origin links inside the console navigate without reloading; modified clicks, downloads
  // and links elsewhere behave as links do.
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const anchor = (event.target as Element | null)?.closest?.("a");
    if (!anchor || anchor.hasAttribute("download") || anchor.target !== "") return;
    const url = new URL(anchor.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith(BASE)) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
}

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (options.replace) history.replaceState(null, "", to);
  else if (to !== location.pathname + location.search) history.pushState(null, "", to);
  renderCurrent();
}
