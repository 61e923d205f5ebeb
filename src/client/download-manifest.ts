import { lstat, mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { STATE_DIR_NAME } from "./download/plan.js";
import type { FileRef, PlannedEntry } from "./download/types.js";
import { sha256OfFile } from "./upload/digest.js";

/** In the download folder's hidden state folder, beside the engine's resume journals. */
export const MANIFEST_FILE_NAME = "manifest.json";

export interface ManifestEntry {
  /** Path relative to the download folder, '/' separators. */
  local_path: string;
  node_rank: number;
  relative_file_name: string;
  size_bytes: number;
  /** Null when the server announced no digest and the download was not told to hash (`--hash`): verify then checks the size only. */
  sha256: string | null;
}

export interface DownloadManifest {
  version: 1;
  project_id: string;
  training_job_id: string;
  checkpoint_id: string | null;
  /** The checkpoint's state when it was downloaded (null: the server reports none, or a whole job). */
  state: string | null;
  written_at: string;
  files: ManifestEntry[];
}

function manifestPath(dest: string): string {
  return join(dest, STATE_DIR_NAME, MANIFEST_FILE_NAME);
}

async function readManifest(dest: string): Promise<DownloadManifest | null> {
  try {
    return JSON.parse(await readFile(manifestPath(dest), "utf8")) as DownloadManifest;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new Error(`${manifestPath(dest)} is not a readable manifest: ${(err as Error).message}`);
  }
}

/**
 * Records what a finished download put in `dest`: each file's rank, name, size and SHA-256 (of
 * the bytes on disk: taken from the entry when the download hashed them; for the others read
 * back with `readBackUnhashed`, else kept from an earlier manifest for a file this run left as it
 * was, else null). Entries of earlier downloads into the same folder are kept unless this one
 * rewrote them. Written to a temporary name and renamed: never half a manifest.
 */
export async function writeDownloadManifest(
  dest: string,
  about: { projectId: string; jobId: string; checkpointId: string | null; state: string | null },
  files: readonly (FileRef & { sha256?: string | null; action?: PlannedEntry["action"] })[],
  options: { readBackUnhashed?: boolean } = {},
): Promise<DownloadManifest> {
  const readBack = options.readBackUnhashed ?? false;
  const byPath = new Map<string, ManifestEntry>();
  for (const entry of (await readManifest(dest))?.files ?? []) byPath.set(entry.local_path, entry);
  for (const file of files) {
    const earlier = byPath.get(file.localName);
    // A file the run skipped is the one an earlier run recorded (same name, same size).
    const kept = file.action === "skip" && earlier?.size_bytes === file.sizeBytes ? earlier.sha256 : null;
    byPath.set(file.localName, {
      local_path: file.localName,
      node_rank: file.nodeRank,
      relative_file_name: file.relativeFileName,
      size_bytes: file.sizeBytes,
      // The download hashed what it wrote as it landed; a file it did not hash is read back only
      // when asked (`--hash`), else an unannounced digest stays unknown.
      sha256: file.sha256 ?? (readBack ? await sha256OfFile(join(dest, ...file.localName.split("/"))) : kept),
    });
  }
  const manifest: DownloadManifest = {
    version: 1,
    project_id: about.projectId,
    training_job_id: about.jobId,
    checkpoint_id: about.checkpointId,
    state: about.state,
    written_at: new Date().toISOString(),
    files: [...byPath.values()].sort((a, b) => (a.local_path < b.local_path ? -1 : a.local_path > b.local_path ? 1 : 0)),
  };
  await mkdir(join(dest, STATE_DIR_NAME), { recursive: true });
  const temporary = `${manifestPath(dest)}.${process.pid}.tmp`;
  await writeFile(temporary, JSON.stringify(manifest, null, 2) + "\n");
  await rename(temporary, manifestPath(dest));
  return manifest;
}

export interface VerifyReport {
  manifest: DownloadManifest;
  ok: number;
  /** Of `ok`, the files whose manifest entry has no digest: only their size was checked. */
  sizeOnly: number;
  missing: ManifestEntry[];
  changed: { entry: ManifestEntry; reason: string }[];
  /** Files under dest the manifest does not list (the state folder aside). */
  extra: string[];
}

/** Checks a downloaded tree against its manifest, offline: every listed file's size and SHA-256, and files nobody listed. */
export async function verifyDownload(dest: string): Promise<VerifyReport> {
  const manifest = await readManifest(dest);
  if (!manifest) throw new Error(`no manifest at ${manifestPath(dest)}: was this folder written by ckpt download?`);
  const report: VerifyReport = { manifest, ok: 0, sizeOnly: 0, missing: [], changed: [], extra: [] };
  const listed = new Set(manifest.files.map((f) => f.local_path));
  for (const entry of manifest.files) {
    const path = join(dest, ...entry.local_path.split("/"));
    const info = await lstat(path).catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? null : Promise.reject(err)));
    if (!info) report.missing.push(entry);
    else if (!info.isFile()) report.changed.push({ entry, reason: "not a regular file" });
    else if (info.size !== entry.size_bytes) report.changed.push({ entry, reason: `size ${info.size}, expected ${entry.size_bytes}` });
    else if (entry.sha256 === null) {
      report.ok++;
      report.sizeOnly++;
    } else if ((await sha256OfFile(path)) !== entry.sha256) report.changed.push({ entry, reason: "SHA-256 differs" });
    else report.ok++;
  }
  for (const path of await walk(dest, "")) if (!listed.has(path)) report.extra.push(path);
  return report;
}

async function walk(root: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(root, ...prefix.split("/").filter(Boolean)), { withFileTypes: true })) {
    const name = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (!prefix && entry.name === STATE_DIR_NAME) continue;
    if (entry.isDirectory()) out.push(...(await walk(root, name)));
    else out.push(name);
  }
  return out.sort();
}

