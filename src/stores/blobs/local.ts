import { randomUUID } from "node:crypto";
import { closeSync, createReadStream, createWriteStream, fstatSync, openSync, readSync, type Stats } from "node:fs";
import { access, mkdir, open, readFile, readdir, rename, rm, rmdir, stat, statfs, unlink, writeFile } from "node:fs/promises";
import { constants as fsConstants } from "node:fs";
import { dirname, join, sep } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  BlobIntegrityError,
  BlobNoSpaceError,
  BlobPathConflictError,
  type BlobStat,
  type BlobStore,
  type ByteRange,
  type DirectUploadPlan,
  type DirectUploadRef,
  type PutOptions,
  type PutResult,
  type UploadedPartRef,
  partLength,
  planParts,
} from "./store.js";
import { MeasuredBody, measureStream } from "./measure.js";

/**
 * Where the API server answers for this store's bytes: the store knows no route paths nor
 * signing secrets, the composition root gives it these (see src/server/blob-urls.ts).
 * `expiresAt` is in Unix seconds.
 */
export interface LocalBlobUrls {
  /** An absolute URL that GETs the blob at `key` until `expiresAt`. */
  download(key: string, expiresAt: number): string;
  /** An absolute URL that PUTs part `partNumber` of a direct upload until `expiresAt`. */
  uploadPart(uploadId: string, partNumber: number, expiresAt: number): string;
}

/** A direct upload's temporary file outlives a restart for this long (its URLs last at most a day). */
const DIRECT_UPLOAD_KEEP_MS = 2 * 24 * 3600 * 1000;

/**
 * A blob opened for a download. Its metadata comes from the open file, so the validators sent
 * always describe the bytes sent, even when the key is replaced in between (a replacement is a
 * rename: this descriptor keeps the old inode).
 */
export interface OpenedBlob {
  fd: number;
  stat: BlobStat;
}

function blobStatOf(s: Stats): BlobStat {
  return {
    sizeBytes: s.size,
    lastModified: s.mtime,
    // size + mtime in ns + inode: changes on every replacement, as rename gives a new inode.
    etag: `"${s.size.toString(16)}-${Math.round(s.mtimeMs * 1000).toString(16)}-${s.ino.toString(16)}"`,
  };
}

/** Below this much free space no upload can succeed, so readiness reports the disk as full. */
const READY_MIN_FREE_BYTES = 1 << 20;

/**
 * Blobs as plain files under `<dataDir>/blobs/<key>`. Writes go to `<dataDir>/tmp/` first, are
 * fsynced, then renamed into place, so a reader (or a crash) never sees a partial file at a key.
 */
export class LocalBlobStore implements BlobStore {
  readonly kind = "local";
  /** Nothing but this server can take the bytes of a part. */
  readonly capabilities = { partsViaApiServer: true };
  private readonly blobRoot: string;
  private readonly tmpRoot: string;

  constructor(
    dataDir: string,
    private readonly urls: LocalBlobUrls,
    /** Direct uploads to this server go in parts of this size (written in parallel at their offsets). */
    private readonly options: { directPartSizeBytes: number } = { directPartSizeBytes: 64 << 20 },
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
    const measure = new MeasuredBody(options);
    try {
      const handle = await open(tmpPath, "wx", 0o644);
      try {
        // Not handle.createWriteStream(): with autoClose false that stream keeps a reference on the
        // handle forever, and handle.close() below would wait for it, never resolving.
        // The size and digest are checked as the body ends: a bad one fails the pipeline.
        await pipeline(body, measure.stream, createWriteStream("", { fd: handle.fd, autoClose: false, highWaterMark: 1 << 20 }));
        await handle.sync();
        await handle.close();
        await this.moveIntoPlace(tmpPath, key);
        return measure.result();
      } finally {
        await handle.close().catch(() => {});
      }
    } catch (err) {
      await unlink(tmpPath).catch(() => {});
      throw translateFsError(err);
    }
  }

  /**
   * Renames a complete, fsynced temporary file to its key, durably. A delete prunes folders it
   * leaves empty (see delete), which may race with the mkdir here: then the folder is made again.
   */
  private async moveIntoPlace(tmpPath: string, key: string): Promise<void> {
    const finalPath = this.pathOf(key);
    for (let attempt = 1; ; attempt++) {
      await mkdir(dirname(finalPath), { recursive: true });
      try {
        await rename(tmpPath, finalPath);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT" || attempt >= 5) throw err;
      }
    }
    await syncDir(dirname(finalPath));
  }

  // --- Direct uploads: parts PUT to this server's upload route, written at their offsets -------

  private uploadPath(uploadId: string): string {
    if (!/^[a-z0-9]{8,64}$/.test(uploadId)) throw new Error("malformed upload id");
    return join(this.tmpRoot, `upload-${uploadId}`);
  }

  async beginDirectUpload(uploadId: string, sizeBytes: number, expiresInSeconds: number): Promise<DirectUploadPlan> {
    const { partSizeBytes, partCount } = planParts(sizeBytes, this.options.directPartSizeBytes);
    try {
      const handle = await open(this.uploadPath(uploadId), "wx", 0o644);
      await handle.truncate(sizeBytes);
      await handle.close();
    } catch (err) {
      throw translateFsError(err);
    }
    const expiresAt = Math.floor(Date.now() / 1000) + expiresInSeconds;
    const parts = Array.from({ length: partCount }, (_, i) => ({
      partNumber: i + 1,
      url: this.urls.uploadPart(uploadId, i + 1, expiresAt),
      sizeBytes: partLength({ sizeBytes, partSizeBytes }, i + 1),
    }));
    return { partSizeBytes, parts, backendUploadId: null };
  }

  /**
   * Writes one part at its offset and records its ETag once it is durable. Parts may arrive in
   * any order, in parallel, and again (a retried part simply overwrites, with a new ETag).
   * The ETag is a fresh random token, not a digest: it only has to name this write of the part,
   * and the completion hashes the whole file anyway, so hashing each part too was a second pass
   * over every byte (measured by the upload benchmark).
   */
  async writeDirectUploadPart(upload: DirectUploadRef, partNumber: number, body: Readable): Promise<string> {
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > upload.partCount)
      throw new BlobIntegrityError(`part_number must be from 1 to ${upload.partCount}`);
    const expected = partLength(upload, partNumber);
    const path = this.uploadPath(upload.uploadId);
    const measure = new MeasuredBody({ expectedSize: expected, hash: false, checkAtEnd: false });
    try {
      await pipeline(body, measure.stream, createWriteStream(path, { flags: "r+", start: (partNumber - 1) * upload.partSizeBytes, highWaterMark: 1 << 20 }));
      if (measure.size() !== expected) throw new BlobIntegrityError(`part ${partNumber} ended after ${measure.size()} of its ${expected} bytes`);
      const handle = await open(path, "r+");
      await handle.sync().finally(() => handle.close());
      const etag = `"${randomUUID().replaceAll("-", "")}"`;
      const marker = `${path}.part-${partNumber}`;
      await writeFile(`${marker}.tmp`, etag);
      await rename(`${marker}.tmp`, marker);
      return etag;
    } catch (err) {
      throw translateFsError(err);
    }
  }

  async completeDirectUpload(
    upload: DirectUploadRef,
    parts: UploadedPartRef[],
    key: string,
    expectedSha256: string | null,
  ): Promise<{ sizeBytes: number; sha256: string | null }> {
    const path = this.uploadPath(upload.uploadId);
    const given = new Map(parts.map((p) => [p.partNumber, p.etag]));
    for (let n = 1; n <= upload.partCount; n++) {
      const recorded = await readFile(`${path}.part-${n}`, "utf8").catch(() => null);
      if (recorded === null) throw new BlobIntegrityError(`part ${n} was never uploaded`);
      if (given.get(n) !== recorded) throw new BlobIntegrityError(`part ${n}: the ETag given does not match the part uploaded`);
    }
    const { sizeBytes: size, sha256 } = await measureStream(createReadStream(path, { highWaterMark: 1 << 20 }));
    if (size !== upload.sizeBytes) throw new BlobIntegrityError(`upload holds ${size} of its ${upload.sizeBytes} bytes`);
    if (expectedSha256 !== null && sha256 !== expectedSha256)
      throw new BlobIntegrityError(`sha256 of the uploaded file is ${sha256}, not the declared ${expectedSha256}`);
    try {
      await this.moveIntoPlace(path, key);
    } catch (err) {
      throw translateFsError(err);
    }
    await this.removePartMarkers(upload);
    return { sizeBytes: size, sha256 };
  }

  async abortDirectUpload(upload: DirectUploadRef): Promise<void> {
    await rm(this.uploadPath(upload.uploadId), { force: true });
    await this.removePartMarkers(upload);
  }

  private async removePartMarkers(upload: DirectUploadRef): Promise<void> {
    const path = this.uploadPath(upload.uploadId);
    for (let n = 1; n <= upload.partCount; n++) await rm(`${path}.part-${n}`, { force: true });
  }

  async stat(key: string): Promise<BlobStat | null> {
    try {
      const s = await stat(this.pathOf(key));
      if (!s.isFile()) return null;
      return blobStatOf(s);
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

  /**
   * Opens a blob for a download with blocking calls (open and fstat: metadata, cached like the
   * data; see the blob download route for why not through the thread pool); null when there is
   * none. The caller owns the descriptor: it passes it to readOpened or streamOpened, or closeOpened.
   */
  openForDownload(key: string): OpenedBlob | null {
    let fd: number;
    try {
      fd = openSync(this.pathOf(key), "r");
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    try {
      const s = fstatSync(fd);
      if (s.isFile()) return { fd, stat: blobStatOf(s) };
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    closeSync(fd);
    return null;
  }

  /** Bytes `start..end` (inclusive, a few hundred KiB at most: it blocks) of an opened blob, which is then closed. */
  readOpened(blob: OpenedBlob, start: number, end: number): Buffer {
    try {
      const bytes = Buffer.allocUnsafe(end - start + 1);
      for (let at = 0; at < bytes.length; ) {
        const n = readSync(blob.fd, bytes, at, bytes.length - at, start + at);
        // Shorter than its fstat said: truncated in place, which ckpt never does (it renames).
        if (n === 0) throw new Error("blob ended early: changed in place while being read");
        at += n;
      }
      return bytes;
    } finally {
      closeSync(blob.fd);
    }
  }

  /** Bytes `start..end` (inclusive) of an opened blob as a stream, which closes the blob when done or destroyed. */
  streamOpened(blob: OpenedBlob, start: number, end: number): Readable {
    return createReadStream("", { fd: blob.fd, start, end, highWaterMark: 1 << 20, autoClose: true });
  }

  closeOpened(blob: OpenedBlob): void {
    closeSync(blob.fd);
  }

  /**
   * Every version of a file has a folder of its own (domain/names.ts versionedBlobKey), so a
   * delete removes the folders it leaves empty, up to the first that is not: replacing a file
   * many times leaves no trail of empty folders.
   */
  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    await rm(path, { force: true });
    for (let dir = dirname(path); dir.startsWith(this.blobRoot + sep); dir = dirname(dir)) {
      try {
        await rmdir(dir);
      } catch {
        break; // not empty (or gone): its ancestors are not empty either
      }
    }
  }

  async deletePrefix(prefix: string): Promise<void> {
    const path = this.pathOf(prefix.replace(/\/+$/, ""));
    await rm(path, { recursive: true, force: true });
  }

  presignGet(key: string, expiresInSeconds: number, now = new Date()): string {
    return this.urls.download(key, Math.floor(now.getTime() / 1000) + expiresInSeconds);
  }

  /**
   * Whole-file puts never survive a restart, so their temporary files all go. A direct upload's
   * file may still be completed by its client after a restart; it goes once it is older than any
   * of its URLs could be (the service also aborts expired uploads through their database rows).
   */
  async sweepIncomplete(options: { minAgeMs?: number } = {}): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.tmpRoot).catch(() => [] as string[])) {
      const path = join(this.tmpRoot, name);
      const keepYoungerThan = Math.max(options.minAgeMs ?? 0, name.startsWith("upload-") ? DIRECT_UPLOAD_KEEP_MS : 0);
      if (keepYoungerThan > 0) {
        const modified = (await stat(path).catch(() => null))?.mtimeMs;
        if (modified === undefined) continue; // gone meanwhile (its upload finished)
        if (Date.now() - modified < keepYoungerThan) continue;
      }
      await rm(path, { force: true, recursive: true });
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

  async checkHealth(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    await access(this.blobRoot, fsConstants.R_OK | fsConstants.W_OK);
    await access(this.tmpRoot, fsConstants.R_OK | fsConstants.W_OK);
    const fs = await statfs(this.tmpRoot);
    const free = fs.bavail * fs.bsize;
    if (free < READY_MIN_FREE_BYTES) throw new BlobNoSpaceError(`the blob store's disk is full (${free} bytes free)`);
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
