import { lstat, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { UnsafePathError } from "./errors.js";

/**
 * Creates folders under `root` one segment at a time, refusing to go through a symlink or a
 * non-folder, so a listed name cannot be steered outside `root` by a link that is already
 * there (`rank-0/ckpt -> /etc`). `root` itself is the user's choice and may be a link.
 * Folders already checked in this run are remembered.
 */
export class SafeDirs {
  private readonly checked = new Set<string>();

  constructor(private readonly root: string) {}

  /** Makes sure `relativeDir` ('/'-separated, already validated) exists as real folders under root. */
  async ensure(relativeDir: string): Promise<void> {
    let current = this.root;
    for (const segment of relativeDir.split("/").filter((s) => s !== "")) {
      current = join(current, segment);
      if (this.checked.has(current)) continue;
      await ensureRealDirectory(current);
      this.checked.add(current);
    }
  }
}

async function ensureRealDirectory(path: string): Promise<void> {
  for (let tries = 0; tries < 3; tries++) {
    try {
      const info = await lstat(path);
      if (info.isSymbolicLink()) throw new UnsafePathError(`${path} is a symbolic link: refusing to write through it`);
      if (!info.isDirectory()) throw new UnsafePathError(`${path} exists and is not a folder`);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    try {
      await mkdir(path);
      return;
    } catch (err) {
      // Another worker made it between our lstat and mkdir: check what it is.
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
  throw new UnsafePathError(`${path} keeps changing while it is created`);
}
