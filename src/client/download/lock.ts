import { open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";

/**
 * Claims the state folder for this process, so two downloads into one folder cannot interleave
 * their partial files. A lock left by a process that no longer runs (kill -9) is taken over.
 * Resolves with the release function.
 */
export async function lockStateDir(stateDir: string): Promise<() => Promise<void>> {
  const path = join(stateDir, "lock");
  for (let tries = 0; tries < 2; tries++) {
    try {
      const handle = await open(path, "wx");
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = Number((await readFile(path, "utf8").catch(() => "")).trim());
    if (Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid && isRunning(holder))
      throw new Error(`another download (pid ${holder}) is writing into this folder; if it is gone, delete ${path}`);
    await rm(path, { force: true });
  }
  throw new Error(`could not lock ${path}`);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
