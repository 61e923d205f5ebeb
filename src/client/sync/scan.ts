import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { isJournalFile } from "./journal.js";
import type { LocalFile } from "./types.js";

/**
 * Every regular file under `root`, keyed by relative name, with its size and mtime.
 *
 * A polling scan rather than fs.watch: inotify misses writes made on other hosts of a network
 * filesystem, and its events arrive per write call anyway. A stat per file per scan is cheap
 * next to the checkpoints themselves. Symlinks are not followed (they could leave the folder),
 * and the sync journal is never part of the result. Files and folders that vanish mid-scan
 * (a trainer rotating old checkpoints) are simply absent; a missing root is an empty folder.
 */
export async function scanFolder(root: string): Promise<Map<string, LocalFile>> {
  const files = new Map<string, LocalFile>();
  await scanInto(files, root, "");
  return files;
}

async function scanInto(files: Map<string, LocalFile>, dir: string, prefix: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(ignoreVanished);
  if (!entries) return;
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const name = prefix + entry.name;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await scanInto(files, path, `${name}/`);
    else if (entry.isFile() && !(prefix === "" && isJournalFile(entry.name))) {
      const stats = await stat(path).catch(ignoreVanished);
      if (stats?.isFile()) files.set(name, { name, path, size: stats.size, mtimeMs: stats.mtimeMs });
    }
  }
}

function ignoreVanished(err: NodeJS.ErrnoException): null {
  if (err.code === "ENOENT" || err.code === "ENOTDIR") return null;
  throw err;
}
