import type { Readable } from "node:stream";

export interface BlobStat {
  sizeBytes: number;
  lastModified: Date;
  /** An opaque validator that changes whenever the bytes do. */
  etag: string;
}

export interface PutOptions {
  /** When set, a body of any other length is rejected and nothing is kept. */
  expectedSize?: number;
  /** Lowercase hex SHA-256; when set, a mismatch is rejected and nothing is kept. */
  expectedSha256?: string;
  /**
   * Sees the body's chunks in order as they pass, until it returns false (file facts read a
   * header this way: from the bytes being stored, no second read and no extra stream).
   */
  observe?: (chunk: Buffer) => boolean;
}

export interface PutResult {
  sizeBytes: number;
  sha256: string;
}

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

/**
 * Where checkpoint bytes live. Keys follow `training_projects/{p}/jobs/{j}/rank-{n}/{name}`.
 * `put` is all-or-nothing: until it resolves, nothing is readable at the key, and when it
 * rejects, nothing new is left behind. Implementations: local disk, S3.
 */
export interface BlobStore {
  readonly kind: string;
  readonly capabilities: BlobStoreCapabilities;
  /** Present when the store can list and adopt objects that already exist (`ckpt admin import`). */
  readonly adoption?: BlobAdoption;
  put(key: string, body: Readable, options: PutOptions): Promise<PutResult>;
  stat(key: string): Promise<BlobStat | null>;
  read(key: string, range?: ByteRange): Promise<Readable>;
  delete(key: string): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
  /** An absolute URL that downloads the blob with no other credential until it expires. */
  presignGet(key: string, expiresInSeconds: number, now?: Date): string;
  /**
   * Removes partial uploads left by a crash; returns how many were removed. With `minAgeMs`, only
   * those untouched for at least that long (an upload in progress writes, so it stays young):
   * what `ckpt admin gc` asks for, as it may run beside live servers.
   */
  sweepIncomplete(options?: { minAgeMs?: number }): Promise<number>;
  /**
   * Direct uploads: the client PUTs the parts straight to the returned URLs (to S3, or to this
   * server's blob route), then the server completes. Nothing is visible at any key before
   * completeDirectUpload, which verifies the size (and the digest, when one is expected) and then
   * moves the bytes to `key` all-or-nothing.
   */
  beginDirectUpload(uploadId: string, sizeBytes: number, expiresInSeconds: number): Promise<DirectUploadPlan>;
  completeDirectUpload(upload: DirectUploadRef, parts: UploadedPartRef[], key: string, expectedSha256: string | null): Promise<{ sizeBytes: number; sha256: string | null }>;
  abortDirectUpload(upload: DirectUploadRef): Promise<void>;
  /** Every key under a prefix, for garbage collection. */
  listKeys(prefix: string): AsyncIterable<string>;
  /**
   * A cheap call that rejects when the store cannot take requests (readiness probes): S3 a
   * HeadBucket; the local store that its directories are there and its disk has room.
   */
  checkHealth(signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export interface BlobStoreCapabilities {
  /** Direct-upload parts are PUT to the API server's part route (the store has no URL of its own for them). */
  partsViaApiServer: boolean;
}

/** Objects of a bucket, named by their full object key. */
export interface ForeignObject {
  key: string;
  sizeBytes: number;
}

/**
 * Bringing objects that already exist (in the store's bucket or another one the store's
 * credentials can read) under the store's keys, without passing their bytes through ckpt.
 */
export interface BlobAdoption {
  /** Objects under `prefix` of `bucket`, the store's own staging objects left out. */
  listObjects(location: { bucket: string; prefix: string }): AsyncIterable<ForeignObject>;
  /** Puts a copy of the object at `key` (an object already there is kept), with the digest it carries, if any. */
  adoptObject(from: { bucket: string; key: string }, key: string): Promise<{ sizeBytes: number; sha256: string | null }>;
}

export interface DirectUploadPlan {
  partSizeBytes: number;
  parts: { partNumber: number; url: string; sizeBytes: number }[];
  /** The store's own id for the upload (an S3 multipart upload id), if it has one. */
  backendUploadId: string | null;
}

export interface DirectUploadRef {
  uploadId: string;
  sizeBytes: number;
  partSizeBytes: number;
  partCount: number;
  backendUploadId: string | null;
}

export interface UploadedPartRef {
  partNumber: number;
  etag: string;
}

/** Parts of at least `preferred` bytes, and never more than S3's 10,000; an empty file is one empty part. */
export function planParts(sizeBytes: number, preferred: number): { partSizeBytes: number; partCount: number } {
  const partSizeBytes = Math.max(preferred, Math.ceil(sizeBytes / 10_000));
  return { partSizeBytes, partCount: Math.max(1, Math.ceil(sizeBytes / partSizeBytes)) };
}

export function partLength(upload: Pick<DirectUploadRef, "sizeBytes" | "partSizeBytes">, partNumber: number): number {
  return Math.max(0, Math.min(upload.partSizeBytes, upload.sizeBytes - (partNumber - 1) * upload.partSizeBytes));
}

/** Thrown by `put` when the body does not match what was promised; maps to a 400. */
export class BlobIntegrityError extends Error {}
/** Thrown by `put` when a name collides with a folder (e.g. `a` and `a/b`); maps to a 409. */
export class BlobPathConflictError extends Error {}
/** Thrown by `put` when the disk is full; maps to a 507. */
export class BlobNoSpaceError extends Error {}
