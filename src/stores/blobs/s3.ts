import { createHash, randomUUID } from "node:crypto";
import { Readable, Transform, pipeline } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { S3Presigner, uriEscapeKey, type S3PresignCredentials } from "./sigv4-presign.js";
import {
  BlobIntegrityError,
  BlobNoSpaceError,
  type BlobStat,
  type BlobStore,
  type ByteRange,
  type PutOptions,
  type PutResult,
  type DirectUploadPlan,
  type DirectUploadRef,
  type UploadedPartRef,
  partLength,
  planParts,
} from "./store.js";

const MIB = 1024 * 1024;
/** S3's limits: parts of 5 MiB..5 GiB (the last may be smaller), at most 10,000 of them. */
const MIN_PART_SIZE = 5 * MIB;
const MAX_PART_SIZE = 5 * 1024 * MIB;
const MAX_PARTS = 10_000;
/** CopyObject copies at most 5 GiB; larger objects are copied part by part. */
const MAX_COPY_OBJECT_BYTES = 5 * 1024 * MIB;
const MAX_KEY_BYTES = 1024;
const DELETE_BATCH = 1000;
const CONTENT_TYPE = "application/octet-stream";
/** User metadata holding the lowercase hex SHA-256 of the bytes; GETs return it as `x-amz-meta-sha256`. */
const SHA256_METADATA = "sha256";
/** Under the store prefix; holds bodies whose digest is only known once they have been read. */
const STAGING_DIR = ".ckpt-staging/";
/** Never re-read credentials more often than this (a provider may keep returning the same ones). */
const MIN_REFRESH_DELAY_MS = 30_000;

export interface S3BlobStoreConfig {
  bucket: string;
  /** "" or a prefix ending in "/" (e.g. "ckpt/"): objects live at `<prefix><key>`. */
  prefix: string;
  /** e.g. "http://127.0.0.1:7480"; unset means AWS S3 (`https://s3.<region>.amazonaws.com`). */
  endpoint?: string;
  /** The endpoint presigned URLs name, when clients reach the store elsewhere than `endpoint`. */
  publicEndpoint?: string;
  region: string;
  /** `https://host/bucket/key` instead of `https://bucket.host/key` (most S3-compatible stores). */
  forcePathStyle: boolean;
  /** Static credentials or a provider; unset means the SDK's default chain (AWS_ACCESS_KEY_ID, ...). */
  credentials?: S3ClientConfig["credentials"];
  /** Multipart part size for puts (5 MiB..5 GiB; default 8 MiB). Memory per put is about (partConcurrency + 1) parts. */
  partSizeBytes?: number;
  /** Parts uploaded (or copied) at once per put (default 4). */
  partConcurrency?: number;
  /** Staged bodies above this size are copied part by part (default and maximum: 5 GiB, CopyObject's limit). */
  multipartCopyThresholdBytes?: number;
  /** Part size of a multipart copy (default 512 MiB; raised when needed to stay within 10,000 parts). */
  copyPartSizeBytes?: number;
  /**
   * sweepIncomplete leaves uploads younger than this alone (default 24 h): with several servers
   * on one bucket, a starting server must not abort another's upload in flight.
   */
  sweepMinAgeSeconds?: number;
  /** Part size of direct uploads, PUT in parallel by the client (default 64 MiB; S3's minimum is 5 MiB). */
  directPartSizeBytes?: number;
}

export interface S3ObjectHead extends BlobStat {
  /** User metadata (`x-amz-meta-*`, names lowercased), e.g. `{ sha256: "…" }`. */
  metadata: Record<string, string>;
}

export interface UploadedPart {
  partNumber: number;
  etag: string;
}

/**
 * `s3://bucket/some/prefix` -> `{ bucket: "bucket", prefix: "some/prefix/" }` (prefix "" when
 * absent). The prefix is taken literally (no percent-decoding), like the AWS CLI does.
 */
export function parseBlobStoreUrl(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/?#]*)(?:\/([^?#]*))?$/i.exec(url);
  if (!m) throw new Error(`blob store URL must look like s3://bucket or s3://bucket/prefix (got ${JSON.stringify(url)})`);
  const bucket = m[1] ?? "";
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/.test(bucket))
    throw new Error(`${JSON.stringify(bucket)} is not a valid S3 bucket name (in ${JSON.stringify(url)})`);
  const path = (m[2] ?? "").replace(/\/+$/, "");
  if (path === "") return { bucket, prefix: "" };
  for (const segment of path.split("/")) {
    if (segment === "" || segment === "." || segment === "..")
      throw new Error(`the prefix of ${JSON.stringify(url)} must not contain empty, "." or ".." segments`);
  }
  return { bucket, prefix: `${path}/` };
}

/**
 * When to re-read credentials that expire: halfway through their remaining life (so presigned
 * URLs, which cannot outlive the credentials that signed them, keep getting at least half of it)
 * and at the latest 10 minutes before expiry, but not more often than every 30 s unless they are
 * that short-lived. Expired ones (a provider that keeps returning them) are retried every 30 s.
 */
export function credentialRefreshDelayMs(expiration: Date, nowMs: number): number {
  const left = expiration.getTime() - nowMs;
  if (!(left > 0)) return MIN_REFRESH_DELAY_MS;
  const target = Math.min(left / 2, left - 10 * 60_000);
  const floor = Math.min(MIN_REFRESH_DELAY_MS, left / 2);
  return Math.min(Math.floor(Math.max(target, floor)), 2 ** 31 - 1);
}

/**
 * Blobs as objects in any S3-compatible bucket, at `<prefix><key>` (Baseten's layout, so any S3
 * tool finds them), each with `x-amz-meta-sha256`.
 *
 * `put` never exposes a partial or unverified body, and a failed replacement leaves the old object
 * untouched, because an object only appears (or changes) when a PutObject, CompleteMultipartUpload
 * or CopyObject succeeds, and we issue those only after the body has been counted and hashed:
 * - a body of at most one part is buffered, verified, then written with one PutObject;
 * - a larger body whose SHA-256 was declared is streamed as a multipart upload to the key itself,
 *   with the declared digest as metadata. The last part is only released once the stream has
 *   ended and matched the declared size and digest; on any failure the upload is aborted;
 * - a larger body with no declared digest is streamed the same way to a staging key (its digest,
 *   which goes into the metadata, is only known at the end), then copied server-side to the key
 *   with the metadata, and the staging object is deleted.
 *
 * Presigning is synchronous and local (S3Presigner): credentials are resolved once by init() and,
 * when they expire, re-read in the background well before they do.
 */
export class S3BlobStore implements BlobStore {
  readonly kind = "s3";
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly stagingPrefix: string;
  private readonly presignEndpoint: string;
  private readonly region: string;
  private readonly forcePathStyle: boolean;
  private readonly partSize: number;
  private readonly partConcurrency: number;
  private readonly multipartCopyThreshold: number;
  private readonly copyPartSize: number;
  private readonly sweepMinAgeMs: number;
  private readonly directPartSize: number;
  private presigner: S3Presigner | null = null;
  private refreshTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(config: S3BlobStoreConfig) {
    if (config.prefix !== "" && (!config.prefix.endsWith("/") || config.prefix.startsWith("/")))
      throw new Error(`S3 prefix must be "" or end with "/" and not start with "/" (got ${JSON.stringify(config.prefix)})`);
    this.bucket = config.bucket;
    this.prefix = config.prefix;
    this.stagingPrefix = config.prefix + STAGING_DIR;
    this.region = config.region;
    this.forcePathStyle = config.forcePathStyle;
    this.presignEndpoint = config.publicEndpoint ?? config.endpoint ?? `https://s3.${config.region}.amazonaws.com`;
    this.partSize = config.partSizeBytes ?? 8 * MIB;
    if (!Number.isSafeInteger(this.partSize) || this.partSize < MIN_PART_SIZE || this.partSize > MAX_PART_SIZE)
      throw new Error(`S3 part size must be from 5 MiB to 5 GiB (got ${this.partSize})`);
    this.partConcurrency = Math.max(1, Math.floor(config.partConcurrency ?? 4));
    this.multipartCopyThreshold = Math.min(config.multipartCopyThresholdBytes ?? MAX_COPY_OBJECT_BYTES, MAX_COPY_OBJECT_BYTES);
    this.copyPartSize = Math.min(Math.max(config.copyPartSizeBytes ?? 512 * MIB, MIN_PART_SIZE), MAX_PART_SIZE);
    this.sweepMinAgeMs = Math.max(0, (config.sweepMinAgeSeconds ?? 24 * 3600) * 1000);
    this.directPartSize = Math.max(5 << 20, config.directPartSizeBytes ?? 64 << 20);
    this.client = new S3Client({
      region: config.region,
      endpoint: config.endpoint,
      forcePathStyle: config.forcePathStyle,
      credentials: config.credentials,
      // We verify SHA-256 ourselves; the SDK's default CRC32 headers are not understood by
      // every S3-compatible store.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
  }

  /** Resolves credentials (for presigning) and checks that the bucket is reachable. */
  async init(): Promise<void> {
    const identity = await this.client.config.credentials();
    this.presigner = new S3Presigner({
      endpoint: this.presignEndpoint,
      region: this.region,
      forcePathStyle: this.forcePathStyle,
      credentials: presignCredentials(identity),
    });
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      throw new Error(`S3 bucket ${JSON.stringify(this.bucket)} is not usable: ${describeS3Error(err)}`, { cause: err });
    }
    this.scheduleCredentialRefresh(identity.expiration);
  }

  // --- BlobStore ------------------------------------------------------------------------------

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    const objectKey = this.objectKey(key);
    if (Buffer.byteLength(objectKey) > MAX_KEY_BYTES)
      throw new BlobIntegrityError(`the object key would be longer than S3's ${MAX_KEY_BYTES} bytes`);
    const measure = new MeasuredBody(options);
    // pipeline() destroys the body if we stop reading early (measure destroyed) or it fails.
    const source = pipeline(body, measure.stream, () => {});
    // A declared size above 10,000 parts (78 GiB at 8 MiB) gets larger parts; an undeclared one
    // is refused once it passes that.
    const partSize = Math.min(Math.max(this.partSize, Math.ceil((options.expectedSize ?? 0) / MAX_PARTS)), MAX_PART_SIZE);
    const parts = partsOf(source, partSize)[Symbol.asyncIterator]();
    try {
      const first = await parts.next();
      if (first.done) throw new Error("unreachable: partsOf always yields a last part");
      if (first.value.last) {
        // The whole body is in memory and verified (the stream ended, so MeasuredBody's checks passed).
        const result = measure.result();
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: objectKey,
            Body: first.value.data,
            ContentLength: first.value.data.length,
            ContentType: CONTENT_TYPE,
            Metadata: { [SHA256_METADATA]: result.sha256 },
          }),
        );
        return result;
      }
      const rest = prepend(first.value, parts);
      if (options.expectedSha256 !== undefined) {
        await this.uploadParts(objectKey, rest, { [SHA256_METADATA]: options.expectedSha256 });
        return measure.result();
      }
      const stagingKey = this.stagingPrefix + randomUUID();
      try {
        await this.uploadParts(stagingKey, rest, undefined);
        const result = measure.result();
        await this.copy(stagingKey, objectKey, result.sizeBytes, { [SHA256_METADATA]: result.sha256 });
        return result;
      } finally {
        // Best effort: sweepIncomplete removes what is left if this fails.
        await this.deleteObjectKey(stagingKey).catch(() => {});
      }
    } catch (err) {
      measure.stream.destroy();
      throw translatePutError(err);
    }
  }

  async stat(key: string): Promise<BlobStat | null> {
    const head = await this.head(key);
    return head && { sizeBytes: head.sizeBytes, lastModified: head.lastModified, etag: head.etag };
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    const res = await this.client.send(
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: this.objectKey(key),
        Range: range ? `bytes=${range.start}-${range.end}` : undefined,
      }),
    );
    if (!(res.Body instanceof Readable)) throw new Error("S3 GetObject returned no Node.js stream");
    return res.Body;
  }

  async delete(key: string): Promise<void> {
    await this.deleteObjectKey(this.objectKey(key));
  }

  /** Deletes every object in the folder `prefix` (`a/b` and `a/b/` alike; never `a/bc`). */
  async deletePrefix(prefix: string): Promise<void> {
    const folder = folderOf(prefix);
    if (folder === "") throw new Error("refusing to delete every blob (empty prefix)");
    let batch: string[] = [];
    for await (const object of this.listObjects(this.objectKey(folder))) {
      batch.push(object.key);
      if (batch.length === DELETE_BATCH) {
        await this.deleteBatch(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await this.deleteBatch(batch);
  }

  presignGet(key: string, expiresInSeconds: number, now?: Date): string {
    return this.signer().presign({ method: "GET", bucket: this.bucket, key: this.objectKey(key), expiresInSeconds, now });
  }

  /**
   * Aborts multipart uploads under the store prefix and deletes staging objects, when older than
   * `sweepMinAgeSeconds`. Returns how many were removed.
   */
  async sweepIncomplete(options: { minAgeMs?: number } = {}): Promise<number> {
    // Other servers' uploads live in the same bucket: never younger than the configured age.
    const minAgeMs = Math.max(this.sweepMinAgeMs, options.minAgeMs ?? 0);
    const isOld = (started: Date | undefined): boolean => minAgeMs === 0 || started === undefined || Date.now() - started.getTime() >= minAgeMs;
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
      );
      for (const upload of page.Uploads ?? []) {
        if (upload.Key === undefined || upload.UploadId === undefined || !isOld(upload.Initiated)) continue;
        await this.abortUpload(upload.Key, upload.UploadId);
        removed++;
      }
      if (!page.IsTruncated) break;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
    const stale: string[] = [];
    for await (const object of this.listObjects(this.stagingPrefix)) if (isOld(object.lastModified)) stale.push(object.key);
    for (let i = 0; i < stale.length; i += DELETE_BATCH) await this.deleteBatch(stale.slice(i, i + DELETE_BATCH));
    return removed + stale.length;
  }

  /** Every key in the folder `prefix` ("" lists the whole store), staging area excluded. */
  async *listKeys(prefix: string): AsyncIterable<string> {
    for await (const object of this.listObjects(this.objectKey(folderOf(prefix)))) {
      if (object.key.startsWith(this.stagingPrefix)) continue;
      yield object.key.slice(this.prefix.length);
    }
  }

  async checkHealth(signal: AbortSignal): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal });
    } catch (err) {
      throw new Error(`S3 bucket ${JSON.stringify(this.bucket)}: ${describeS3Error(err)}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    this.client.destroy();
  }

  // --- Direct uploads: the client PUTs to S3 itself; parts go to a staging object -------------

  /** Staged under the staging prefix, so an abandoned upload is swept like any staging object. */
  private directStagingKey(uploadId: string): string {
    return `${STAGING_DIR}uploads/${uploadId}`;
  }

  async beginDirectUpload(uploadId: string, sizeBytes: number, expiresInSeconds: number): Promise<DirectUploadPlan> {
    const staging = this.directStagingKey(uploadId);
    const { partSizeBytes, partCount } = planParts(sizeBytes, this.directPartSize);
    if (partCount === 1)
      return { partSizeBytes, backendUploadId: null, parts: [{ partNumber: 1, url: this.presignPut(staging, expiresInSeconds), sizeBytes }] };
    const backendUploadId = await this.createMultipartUpload(staging);
    const parts = Array.from({ length: partCount }, (_, i) => ({
      partNumber: i + 1,
      url: this.presignUploadPart(staging, backendUploadId, i + 1, expiresInSeconds),
      sizeBytes: partLength({ sizeBytes, partSizeBytes }, i + 1),
    }));
    return { partSizeBytes, parts, backendUploadId };
  }

  /**
   * Completes the multipart upload (if any), checks the staged object's size with a HEAD and,
   * when a digest is expected, reads it back once to verify it (S3 checks no SHA-256 of ours),
   * then copies it to its key with the digest as metadata and deletes the staging object.
   */
  async completeDirectUpload(
    upload: DirectUploadRef,
    parts: UploadedPartRef[],
    key: string,
    expectedSha256: string | null,
  ): Promise<{ sizeBytes: number; sha256: string | null }> {
    const staging = this.directStagingKey(upload.uploadId);
    try {
      if (upload.backendUploadId !== null) {
        const numbers = new Set(parts.map((p) => p.partNumber));
        for (let n = 1; n <= upload.partCount; n++) if (!numbers.has(n)) throw new BlobIntegrityError(`part ${n} is missing`);
        await this.completeMultipartUpload(staging, upload.backendUploadId, parts).catch((err) => {
          throw httpStatusOf(err) === 400 ? new BlobIntegrityError(`S3 refused the parts: ${(err as Error).message}`) : err;
        });
      }
      const head = await this.head(staging);
      if (!head) throw new BlobIntegrityError("nothing was uploaded");
      if (head.sizeBytes !== upload.sizeBytes) throw new BlobIntegrityError(`upload holds ${head.sizeBytes} of its ${upload.sizeBytes} bytes`);
      if (expectedSha256 !== null) {
        const hash = createHash("sha256");
        for await (const chunk of await this.read(staging)) hash.update(chunk as Buffer);
        const sha256 = hash.digest("hex");
        if (sha256 !== expectedSha256) throw new BlobIntegrityError(`sha256 of the uploaded file is ${sha256}, not the declared ${expectedSha256}`);
      }
      await this.copy(this.objectKey(staging), this.objectKey(key), head.sizeBytes, expectedSha256 ? { [SHA256_METADATA]: expectedSha256 } : {});
      return { sizeBytes: head.sizeBytes, sha256: expectedSha256 };
    } finally {
      await this.deleteObjectKey(this.objectKey(staging)).catch(() => {});
    }
  }

  async abortDirectUpload(upload: DirectUploadRef): Promise<void> {
    const staging = this.directStagingKey(upload.uploadId);
    if (upload.backendUploadId !== null) await this.abortMultipartUpload(staging, upload.backendUploadId);
    await this.deleteObjectKey(this.objectKey(staging)).catch(() => {});
  }

  // --- Adopting existing objects (`ckpt admin import`) -----------------------------------------

  /** Objects under a prefix of any bucket these credentials can read; keys are full object keys. */
  async *listBucket(bucket: string, prefix: string): AsyncIterable<{ key: string; sizeBytes: number }> {
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) if (o.Key !== undefined) yield { key: o.Key, sizeBytes: o.Size ?? 0 };
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * Brings an existing object to `key` with a server-side copy (nothing passes through ckpt),
   * keeping its `sha256` metadata if it has one. An object already at `key` is left as it is.
   */
  async adoptObject(fromBucket: string, fromKey: string, key: string): Promise<{ sizeBytes: number; sha256: string | null }> {
    const head = await this.client.send(new HeadObjectCommand({ Bucket: fromBucket, Key: fromKey }));
    const sizeBytes = head.ContentLength ?? 0;
    const sha256 = head.Metadata?.[SHA256_METADATA] ?? null;
    if (fromBucket !== this.bucket || fromKey !== this.objectKey(key))
      await this.copy(fromKey, this.objectKey(key), sizeBytes, sha256 ? { [SHA256_METADATA]: sha256 } : {}, fromBucket);
    return { sizeBytes, sha256 };
  }

  // --- Thin helpers for direct (client-to-S3) uploads; keys are store keys, without the prefix ---

  /** HeadObject: size, ETag and user metadata, or null when there is no object. */
  async head(key: string): Promise<S3ObjectHead | null> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return {
        sizeBytes: res.ContentLength ?? 0,
        lastModified: res.LastModified ?? new Date(0),
        etag: res.ETag ?? "",
        metadata: res.Metadata ?? {},
      };
    } catch (err) {
      if (httpStatusOf(err) === 404) return null;
      throw err;
    }
  }

  /** A URL that PUTs one object (of at most 5 GiB) at the key until it expires. */
  presignPut(key: string, expiresInSeconds: number, now?: Date): string {
    return this.signer().presign({ method: "PUT", bucket: this.bucket, key: this.objectKey(key), expiresInSeconds, now });
  }

  /** Starts a multipart upload at the key; its metadata is fixed now. Returns the upload id. */
  async createMultipartUpload(key: string, metadata?: Record<string, string>): Promise<string> {
    const res = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey(key), ContentType: CONTENT_TYPE, Metadata: metadata }),
    );
    if (!res.UploadId) throw new Error("S3 CreateMultipartUpload returned no UploadId");
    return res.UploadId;
  }

  /** A URL that PUTs part `partNumber` (1..10000) of an upload; the response's ETag names the part. */
  presignUploadPart(key: string, uploadId: string, partNumber: number, expiresInSeconds: number, now?: Date): string {
    return this.signer().presign({
      method: "PUT",
      bucket: this.bucket,
      key: this.objectKey(key),
      expiresInSeconds,
      now,
      query: { partNumber: String(partNumber), uploadId },
    });
  }

  /** Makes the object appear at the key, atomically, from the parts (any order). */
  async completeMultipartUpload(key: string, uploadId: string, parts: UploadedPart[]): Promise<void> {
    const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber);
    await this.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: this.objectKey(key),
        UploadId: uploadId,
        MultipartUpload: { Parts: sorted.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
      }),
    );
  }

  /** Discards an upload and its parts; an unknown (already finished or aborted) upload is fine. */
  async abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    await this.abortUpload(this.objectKey(key), uploadId);
  }

  // --- Internals ------------------------------------------------------------------------------

  private objectKey(key: string): string {
    return this.prefix + key;
  }

  private signer(): S3Presigner {
    if (!this.presigner) throw new Error("S3BlobStore.init() must complete before presigning");
    return this.presigner;
  }

  private scheduleCredentialRefresh(expiration: Date | undefined): void {
    if (expiration === undefined || this.closed) return;
    this.setRefreshTimer(credentialRefreshDelayMs(expiration, Date.now()));
  }

  private setRefreshTimer(delayMs: number): void {
    this.refreshTimer = setTimeout(() => {
      this.client.config
        .credentials({ forceRefresh: true })
        .then((identity) => {
          if (this.closed) return;
          this.presigner?.setCredentials(presignCredentials(identity));
          this.scheduleCredentialRefresh(identity.expiration);
        })
        // Keep the old credentials (the presigner clamps URLs to their expiry) and retry.
        .catch(() => {
          if (!this.closed) this.setRefreshTimer(MIN_REFRESH_DELAY_MS);
        });
    }, delayMs);
    this.refreshTimer.unref();
  }

  /**
   * Streams parts to a new multipart upload at objectKey and completes it once the source has
   * ended cleanly; aborts it (after in-flight parts settle) on any failure. At most
   * partConcurrency parts are in flight, and the first failure stops reading the body.
   */
  private async uploadParts(objectKey: string, parts: AsyncIterable<Part>, metadata: Record<string, string> | undefined): Promise<void> {
    const uploadId = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, ContentType: CONTENT_TYPE, Metadata: metadata }),
    ).then((res) => res.UploadId);
    if (!uploadId) throw new Error("S3 CreateMultipartUpload returned no UploadId");
    const cancel = new AbortController();
    const inFlight = new Set<Promise<void>>();
    const completed: CompletedPart[] = [];
    let failure: { error: unknown } | null = null;
    try {
      let partNumber = 0;
      for await (const part of parts) {
        if (failure) break;
        const n = ++partNumber;
        if (n > MAX_PARTS) throw new BlobIntegrityError(`a body of undeclared size may be at most ${MAX_PARTS} parts of ${part.data.length} bytes`);
        const task: Promise<void> = this.client
          .send(
            new UploadPartCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId, PartNumber: n, Body: part.data, ContentLength: part.data.length }),
            { abortSignal: cancel.signal },
          )
          .then((res) => {
            if (!res.ETag) throw new Error(`S3 UploadPart ${n} returned no ETag`);
            completed.push({ PartNumber: n, ETag: res.ETag });
          })
          .catch((error: unknown) => {
            failure ??= { error };
            cancel.abort();
          })
          .finally(() => inFlight.delete(task));
        inFlight.add(task);
        while (inFlight.size >= this.partConcurrency) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      if (failure) throw (failure as { error: unknown }).error;
      completed.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
      await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId, MultipartUpload: { Parts: completed } }),
      );
    } catch (err) {
      cancel.abort();
      await Promise.allSettled(inFlight);
      await this.abortUpload(objectKey, uploadId).catch(() => {});
      throw err;
    }
  }

  /** Server-side copy with new metadata: CopyObject, or UploadPartCopy parts above the threshold. */
  private async copy(fromKey: string, toKey: string, size: number, metadata: Record<string, string>, fromBucket = this.bucket): Promise<void> {
    const copySource = `${fromBucket}/${uriEscapeKey(fromKey)}`;
    if (size <= this.multipartCopyThreshold) {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: toKey,
          CopySource: copySource,
          MetadataDirective: "REPLACE",
          Metadata: metadata,
          ContentType: CONTENT_TYPE,
        }),
      );
      return;
    }
    const partSize = Math.max(this.copyPartSize, Math.ceil(size / MAX_PARTS));
    const partCount = Math.ceil(size / partSize);
    const uploadId = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: toKey, ContentType: CONTENT_TYPE, Metadata: metadata }),
    ).then((res) => res.UploadId);
    if (!uploadId) throw new Error("S3 CreateMultipartUpload returned no UploadId");
    const cancel = new AbortController();
    const parts: CompletedPart[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < partCount && !cancel.signal.aborted) {
        const index = next++;
        const start = index * partSize;
        const end = Math.min(start + partSize, size) - 1;
        const res = await this.client.send(
          new UploadPartCopyCommand({
            Bucket: this.bucket,
            Key: toKey,
            UploadId: uploadId,
            PartNumber: index + 1,
            CopySource: copySource,
            CopySourceRange: `bytes=${start}-${end}`,
          }),
          { abortSignal: cancel.signal },
        );
        const etag = res.CopyPartResult?.ETag;
        if (!etag) throw new Error(`S3 UploadPartCopy ${index + 1} returned no ETag`);
        parts.push({ PartNumber: index + 1, ETag: etag });
      }
    };
    const workers = Array.from({ length: Math.min(this.partConcurrency, partCount) }, () =>
      worker().catch((err: unknown) => {
        cancel.abort();
        throw err;
      }),
    );
    try {
      const outcomes = await Promise.allSettled(workers);
      const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
      if (failed) throw failed.reason;
      parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
      await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: toKey, UploadId: uploadId, MultipartUpload: { Parts: parts } }),
      );
    } catch (err) {
      await this.abortUpload(toKey, uploadId).catch(() => {});
      throw err;
    }
  }

  private async abortUpload(objectKey: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId }));
    } catch (err) {
      if (errorNameOf(err) === "NoSuchUpload" || httpStatusOf(err) === 404) return;
      throw err;
    }
  }

  private async deleteObjectKey(objectKey: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey }));
  }

  private async deleteBatch(objectKeys: string[]): Promise<void> {
    const res = await this.client.send(
      new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: objectKeys.map((Key) => ({ Key })), Quiet: true } }),
    );
    const errors = (res.Errors ?? []).filter((e) => e.Code !== "NoSuchKey");
    if (errors.length > 0) {
      const e = errors[0]!;
      throw new Error(`S3 DeleteObjects failed for ${errors.length} object(s), e.g. ${JSON.stringify(e.Key)}: ${e.Code} ${e.Message ?? ""}`.trim());
    }
  }

  /** ListObjectsV2, every page. */
  private async *listObjects(objectPrefix: string): AsyncIterable<{ key: string; lastModified: Date | undefined }> {
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: objectPrefix, ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) if (object.Key !== undefined) yield { key: object.Key, lastModified: object.LastModified };
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }
}

interface Part {
  data: Buffer;
  /** True for the final part, which is yielded only once the source has ended cleanly. */
  last: boolean;
}

/**
 * Cuts a byte stream into parts of exactly `partSize` bytes plus a final, possibly smaller or
 * empty, one. A part is yielded only once more bytes are known to follow it, so the first part
 * tells whether the body fits in one request, and the last part never leaves before the source
 * has ended without error.
 */
async function* partsOf(source: AsyncIterable<Buffer>, partSize: number): AsyncGenerator<Part> {
  let chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of source) {
    chunks.push(chunk);
    length += chunk.length;
    while (length > partSize) {
      const joined = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
      yield { data: joined.subarray(0, partSize), last: false };
      chunks = [joined.subarray(partSize)];
      length -= partSize;
    }
  }
  yield { data: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length), last: true };
}

async function* prepend(first: Part, rest: AsyncIterator<Part>): AsyncGenerator<Part> {
  try {
    yield first;
    for (;;) {
      const next = await rest.next();
      if (next.done) return;
      yield next.value;
    }
  } finally {
    // Stopping early (a failed part) releases the source, which destroys the body.
    await rest.return?.();
  }
}

/**
 * Counts and hashes a body as it passes. Longer than expectedSize fails at once; shorter, or a
 * digest other than expectedSha256, fails at the end, before the stream ends: a consumer never
 * sees a clean end of an unacceptable body.
 */
class MeasuredBody {
  readonly stream: Transform;
  private size = 0;
  private sha256: string | null = null;

  constructor(options: PutOptions) {
    const hash = createHash("sha256");
    let observe = options.observe;
    this.stream = new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.size += chunk.length;
        if (options.expectedSize !== undefined && this.size > options.expectedSize) {
          done(new BlobIntegrityError(`body is longer than the declared ${options.expectedSize} bytes`));
          return;
        }
        if (observe && !observe(chunk)) observe = undefined;
        hash.update(chunk);
        done(null, chunk);
      },
      flush: (done) => {
        if (options.expectedSize !== undefined && this.size !== options.expectedSize) {
          done(new BlobIntegrityError(`body ended after ${this.size} of the declared ${options.expectedSize} bytes`));
          return;
        }
        const sha256 = hash.digest("hex");
        if (options.expectedSha256 !== undefined && sha256 !== options.expectedSha256) {
          done(new BlobIntegrityError(`sha256 of the body is ${sha256}, not the declared ${options.expectedSha256}`));
          return;
        }
        this.sha256 = sha256;
        done();
      },
    });
  }

  /** Size and digest of a body that has ended and passed its checks. */
  result(): PutResult {
    if (this.sha256 === null) throw new Error("body has not been read to its end");
    return { sizeBytes: this.size, sha256: this.sha256 };
  }
}

function presignCredentials(identity: {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}): S3PresignCredentials {
  return {
    accessKeyId: identity.accessKeyId,
    secretAccessKey: identity.secretAccessKey,
    sessionToken: identity.sessionToken,
    expiration: identity.expiration,
  };
}

/** `a/b`, `a/b/` and `a/b//` -> `a/b/`; "" stays "". */
function folderOf(prefix: string): string {
  const trimmed = prefix.replace(/\/+$/, "");
  return trimmed === "" ? "" : `${trimmed}/`;
}

function errorNameOf(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}

function httpStatusOf(err: unknown): number | undefined {
  const metadata = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata;
  return metadata?.httpStatusCode;
}

function describeS3Error(err: unknown): string {
  const status = httpStatusOf(err);
  const name = errorNameOf(err) ?? "Error";
  const message = err instanceof Error && err.message && err.message !== "UnknownError" ? `: ${err.message}` : "";
  return `${name}${status ? ` (HTTP ${status})` : ""}${message}`;
}

function translatePutError(err: unknown): unknown {
  switch (errorNameOf(err)) {
    case "QuotaExceeded":
      return new BlobNoSpaceError("the S3 bucket's quota is exhausted");
    case "KeyTooLongError":
      return new BlobIntegrityError(`the object key is longer than the S3 store allows`);
    case "EntityTooLarge":
      return new BlobIntegrityError("the body is larger than the S3 store accepts");
    default:
      return err;
  }
}
