import type { Readable } from "node:stream";
import type { BlobStat, DirectUploadRef } from "../stores/blobs/store.js";

export type { BlobStat } from "../stores/blobs/store.js";

/**
 * A blob opened for a download. Its metadata comes from the open file, so the validators sent
 * always describe the bytes sent, even when the key is replaced in between.
 */
export interface OpenedBlob {
  fd: number;
  stat: BlobStat;
}

/**
 * The port of a blob store whose bytes this server serves and receives itself (the embedded,
 * local store): what the blob routes need beyond BlobStore. The composition root hands it to the
 * server when, and only when, the backend is local; the routes never see the concrete class.
 */
export interface ServableBlobStore {
  /** Opens a blob for a download with blocking calls; null when there is none. The caller owns the descriptor. */
  openForDownload(key: string): OpenedBlob | null;
  /** Bytes `start..end` (inclusive) of an opened blob, read at once; the blob is then closed. */
  readOpened(blob: OpenedBlob, start: number, end: number): Buffer;
  /** Bytes `start..end` (inclusive) of an opened blob as a stream, which closes the blob when done or destroyed. */
  streamOpened(blob: OpenedBlob, start: number, end: number): Readable;
  closeOpened(blob: OpenedBlob): void;
  /** Writes one part of a direct upload at its offset; resolves to the part's ETag once durable. */
  writeDirectUploadPart(upload: DirectUploadRef, partNumber: number, body: Readable): Promise<string>;
}
