import type { CkptClient } from "../api.js";
import type { CheckpointFile } from "../types.js";
import { fileKey } from "./plan.js";

/** Every file of a job, read through all pages. */
export async function listAllFiles(
  client: CkptClient,
  args: { projectId: string; jobId: string; pageSize?: number; signal?: AbortSignal },
): Promise<CheckpointFile[]> {
  const files: CheckpointFile[] = [];
  for await (const file of client.listCheckpointFiles(args)) files.push(file);
  return files;
}

/**
 * The job's listing, with the presigned URLs that come with it. When a URL is refused (it
 * expired), `refresh` lists the job again; workers that hit the same expiry wait for that one
 * re-list instead of each starting their own.
 */
export class UrlBook {
  private byKey = new Map<string, CheckpointFile>();
  private listing: CheckpointFile[] = [];
  private generation = 0;
  private refreshing: Promise<void> | null = null;

  private constructor(
    private readonly relist: () => Promise<CheckpointFile[]>,
    private readonly onRefreshed: () => void,
  ) {}

  static async load(relist: () => Promise<CheckpointFile[]>, onRefreshed: () => void = () => {}): Promise<UrlBook> {
    const book = new UrlBook(relist, onRefreshed);
    book.replace(await relist());
    return book;
  }

  /** The listing as last fetched, in the server's order. */
  files(): readonly CheckpointFile[] {
    return this.listing;
  }

  /** The current entry for a file, and the listing generation it comes from. */
  lookup(key: string): { file: CheckpointFile; generation: number } | undefined {
    const file = this.byKey.get(key);
    return file && { file, generation: this.generation };
  }

  /**
   * Fresh URLs for a caller whose URL from generation `seen` was refused. If the listing has
   * been fetched again since, that newer one is used; otherwise one re-list is shared by all.
   */
  async refresh(seen: number): Promise<void> {
    if (this.generation > seen) return;
    this.refreshing ??= this.relist()
      .then((files) => {
        this.replace(files);
        this.generation++;
        this.onRefreshed();
      })
      .finally(() => (this.refreshing = null));
    await this.refreshing;
  }

  private replace(files: CheckpointFile[]): void {
    this.listing = files;
    this.byKey = new Map();
    for (const file of files) if (!this.byKey.has(fileKey(file))) this.byKey.set(fileKey(file), file);
  }
}
