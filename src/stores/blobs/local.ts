import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import { dirname, join, sep } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  BlobIntegrityError,
  BlobNoSpaceError,
  BlobPathConflictError,
  type BlobStat,
  type BlobStore,
  type ByteRange,
  type PutOptions,
  type PutResult,
} from "./store.js";
import type { UrlSigner } from "./url-signing.js";

/** Route under which the API server serves presigned downloads of local blobs. */
export const LOCAL_BLOB_ROUTE_PREFIX = "/blobs/";

export function encodeKeyPath(key: string): string {
  return key.split("/").map(encodeURIComponent).join("/");
}

/**
 * Blobs as plain files under `<dataDir>/blobs/<key>`. Writes go to `<dataDir>/tmp/` first, are
 * fsynced, then renamed into place, so a reader (or a crash) never sees a partial file at a key.
 */
export class LocalBlobStore implements BlobStore {
  readonly kind = "local";
  private readonly blobRoot: string;
  private readonly tmpRoot: string;

  constructor(
    dataDir: string,
    private readonly signer: UrlSigner,
    private readonly publicUrl: string,
  ) {
    this.blobRoot = join(dataDir, "blobs");
    this.tmpRoot = join(dataDir, "tmp");
  }

  async init(): Promise<void> {
    await mkdir(this.blobRoot, { recursive: true });
    await mkdir(this.tmpRoot, { recursive: true });
  }

  private pathOf(key: string): string {
    // Keys are validated before they get here; this is a second wall against escaping the root.
    const path = join(this.blobRoot, key);
    if (!path.startsWith(this.blobRoot + sep)) throw new Error("blob key escapes the blob root");
    return path;
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    const tmpPath = join(this.tmpRoot, randomUUID());
    const hash = createHash("sha256");
    let size = 0;
    const measure = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (options.expectedSize !== undefined && size > options.expectedSize) {
          done(new BlobIntegrityError(`body is longer than the declared ${options.expectedSize} bytes`));
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      const handle = await open(tmpPath, "wx", 0o644);
      try {
        // Not handle.createWriteStream(): with autoClose false that stream keeps a reference on the
        // handle forever, and handle.close() below would wait for it, never resolving.
        await pipeline(body, measure, createWriteStream("", { fd: handle.fd, autoClose: false, highWaterMark: 1 << 20 }));
        if (options.expectedSize !== undefined && size !== options.expectedSize)
          throw new BlobIntegrityError(`body ended after ${size} of the declared ${options.expectedSize} bytes`);
        const sha256 = hash.digest("hex");
        if (options.expectedSha256 !== undefined && sha256 !== options.expectedSha256)
          throw new BlobIntegrityError(`sha256 of the body is ${sha256}, not the declared ${options.expectedSha256}`);
        await handle.sync();
        await handle.close();
        const finalPath = this.pathOf(key);
        await mkdir(dirname(finalPath), { recursive: true });
        await rename(tmpPath, finalPath);
        await syncDir(dirname(finalPath));
        return { sizeBytes: size, sha256 };
      } finally {
        await handle.close().catch(() => {});
      }
    } catch (err) {
      await unlink(tmpPath).catch(() => {});
      throw translateFsError(err);
    }
  }

  async stat(key: string): Promise<BlobStat | null> {
    try {
      const s = await stat(this.pathOf(key));
      if (!s.isFile()) return null;
      return {
        sizeBytes: s.size,
        lastModified: s.mtime,
        // size + mtime in ns + inode: changes on every replacement, as rename gives a new inode.
        etag: `"${s.size.toString(16)}-${Math.round(s.mtimeMs * 1000).toString(16)}-${s.ino.toString(16)}"`,
      };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    // Opened before returning, so a missing file is an error here and not mid-response; the
    // stream owns the handle and closes it when done or destroyed.
    const handle = await open(this.pathOf(key), "r");
    return handle.createReadStream({ start: range?.start, end: range?.end, highWaterMark: 1 << 20 });
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true });
  }

  async deletePrefix(prefix: string): Promise<void> {
    const path = this.pathOf(prefix.replace(/\/+$/, ""));
    await rm(path, { recursive: true, force: true });
  }

  presignGet(key: string, expiresInSeconds: number, now = new Date()): string {
    const path = LOCAL_BLOB_ROUTE_PREFIX + encodeKeyPath(key);
    const expiresAt = Math.floor(now.getTime() / 1000) + expiresInSeconds;
    return `${this.publicUrl}${path}?${this.signer.sign("GET", path, expiresAt)}`;
  }

  async sweepIncomplete(): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.tmpRoot).catch(() => [] as string[])) {
      await rm(join(this.tmpRoot, name), { force: true, recursive: true });
      removed++;
    }
    return removed;
  }

  async *listKeys(prefix: string): AsyncIterable<string> {
    const root = this.pathOf(prefix.replace(/\/+$/, "")) ;
    const walk = async function* (dir: string, rel: string): AsyncIterable<string> {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
      for (const e of entries) {
        const childRel = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) yield* walk(join(dir, e.name), childRel);
        else if (e.isFile()) yield childRel;
      }
    };
    const base = prefix.replace(/\/+$/, "");
    for await (const rel of walk(root, "")) yield `${base}/${rel}`;
  }

  async close(): Promise<void> {}
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

function translateFsError(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOSPC" || code === "EDQUOT") return new BlobNoSpaceError("the blob store is out of space");
  if (code === "EEXIST" || code === "ENOTDIR" || code === "EISDIR")
    return new BlobPathConflictError("a file and a folder of the same name cannot both exist in one rank");
  if (code === "ENAMETOOLONG") return new BlobIntegrityError("a path segment of relative_file_name is too long (max 255 bytes)");
  return err;
}
