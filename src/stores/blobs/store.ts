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
  put(key: string, body: Readable, options: PutOptions): Promise<PutResult>;
  stat(key: string): Promise<BlobStat | null>;
  read(key: string, range?: ByteRange): Promise<Readable>;
  delete(key: string): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
  /** An absolute URL that downloads the blob with no other credential until it expires. */
  presignGet(key: string, expiresInSeconds: number, now?: Date): string;
  /** Removes partial uploads left by a crash; returns how many were removed. */
  sweepIncomplete(): Promise<number>;
  /** Every key under a prefix, for garbage collection. */
  listKeys(prefix: string): AsyncIterable<string>;
  close(): Promise<void>;
}

/** Thrown by `put` when the body does not match what was promised; maps to a 400. */
export class BlobIntegrityError extends Error {}
/** Thrown by `put` when a name collides with a folder (e.g. `a` and `a/b`); maps to a 409. */
export class BlobPathConflictError extends Error {}
/** Thrown by `put` when the disk is full; maps to a 507. */
export class BlobNoSpaceError extends Error {}
