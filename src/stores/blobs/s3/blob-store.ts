import { randomUUID } from "node:crypto";
import { Readable, pipeline } from "node:stream";
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import {
  BlobIntegrityError,
  type BlobAdoption,
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
} from "../store.js";
import { MeasuredBody, measureStream } from "../measure.js";
import { RefreshingPresigner } from "./credentials.js";
import { describeS3Error, httpStatusOf, translatePutError } from "./errors.js";
import {
  CONTENT_TYPE,
  MAX_COPY_OBJECT_BYTES,
  MAX_PARTS,
  MAX_PART_SIZE,
  MIN_PART_SIZE,
  S3Multipart,
  partsOf,
  prepend,
  type UploadedPart,
} from "./multipart.js";

export { credentialRefreshDelayMs } from "./credentials.js";
export type { UploadedPart } from "./multipart.js";

const MIB = 1024 * 1024;
const MAX_KEY_BYTES = 1024;
const DELETE_BATCH = 1000;
/** User metadata holding the lowercase hex SHA-256 of the bytes; GETs return it as `x-amz-meta-sha256`. */
const SHA256_METADATA = "sha256";
/** Under the store prefix; holds bodies whose digest is only known once they have been read. */
const STAGING_DIR = ".ckpt-staging/";

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
 * Presigning is synchronous and local (credentials.ts); every multipart upload goes through one
 * engine (multipart.ts).
 */
export class S3BlobStore implements BlobStore {
  readonly kind = "s3";
  /** Clients PUT the parts of direct uploads straight to S3. */
  readonly capabilities = { partsViaApiServer: false };
  readonly adoption: BlobAdoption = {
    listObjects: (location) => this.listBucket(location.bucket, location.prefix),
    adoptObject: (from, key) => this.adoptObject(from.bucket, from.key, key),
  };
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly multipart: S3Multipart;
  private readonly presigner: RefreshingPresigner;
  private readonly stagingPrefix: string;
  private readonly partSize: number;
  private readonly sweepMinAgeMs: number;
  private readonly directPartSize: number;

  constructor(config: S3BlobStoreConfig) {
    if (config.prefix !== "" && (!config.prefix.endsWith("/") || config.prefix.startsWith("/")))
      throw new Error(`S3 prefix must be "" or end with "/" and not start with "/" (got ${JSON.stringify(config.prefix)})`);
    this.bucket = config.bucket;
    this.prefix = config.prefix;
    this.stagingPrefix = config.prefix + STAGING_DIR;
    this.partSize = config.partSizeBytes ?? 8 * MIB;
    if (!Number.isSafeInteger(this.partSize) || this.partSize < MIN_PART_SIZE || this.partSize > MAX_PART_SIZE)
      throw new Error(`S3 part size must be from 5 MiB to 5 GiB (got ${this.partSize})`);
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
    this.multipart = new S3Multipart(this.client, {
      bucket: config.bucket,
      partConcurrency: Math.max(1, Math.floor(config.partConcurrency ?? 4)),
      multipartCopyThreshold: Math.min(config.multipartCopyThresholdBytes ?? MAX_COPY_OBJECT_BYTES, MAX_COPY_OBJECT_BYTES),
      copyPartSize: Math.min(Math.max(config.copyPartSizeBytes ?? 512 * MIB, MIN_PART_SIZE), MAX_PART_SIZE),
    });
    this.presigner = new RefreshingPresigner(this.client, {
      endpoint: config.publicEndpoint ?? config.endpoint ?? `https://s3.${config.region}.amazonaws.com`,
      region: config.region,
      forcePathStyle: config.forcePathStyle,
    });
  }

  /** Resolves credentials (for presigning) and checks that the bucket is reachable. */
  async init(): Promise<void> {
    await this.presigner.start();
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      this.presigner.close();
      throw new Error(`S3 bucket ${JSON.stringify(this.bucket)} is not usable: ${describeS3Error(err)}`, { cause: err });
    }
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
        await this.multipart.uploadStream(objectKey, rest, { [SHA256_METADATA]: options.expectedSha256 });
        return measure.result();
      }
      const stagingKey = this.stagingPrefix + randomUUID();
      try {
        await this.multipart.uploadStream(stagingKey, rest, undefined);
        const result = measure.result();
        await this.multipart.copy({ bucket: this.bucket, key: stagingKey }, objectKey, result.sizeBytes, { [SHA256_METADATA]: result.sha256 });
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
        await this.multipart.abort(upload.Key, upload.UploadId);
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
    this.presigner.close();
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
        const { sha256 } = await measureStream(await this.read(staging));
        if (sha256 !== expectedSha256) throw new BlobIntegrityError(`sha256 of the uploaded file is ${sha256}, not the declared ${expectedSha256}`);
      }
      await this.multipart.copy({ bucket: this.bucket, key: this.objectKey(staging) }, this.objectKey(key), head.sizeBytes, expectedSha256 ? { [SHA256_METADATA]: expectedSha256 } : {});
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

  /**
   * Objects under a prefix of any bucket these credentials can read; keys are full object keys.
   * A ckpt store's staging area right under the prefix (half-done uploads) is left out.
   */
  async *listBucket(bucket: string, prefix: string): AsyncIterable<{ key: string; sizeBytes: number }> {
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? [])
        if (o.Key !== undefined && !o.Key.slice(prefix.length).startsWith(STAGING_DIR)) yield { key: o.Key, sizeBytes: o.Size ?? 0 };
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
      await this.multipart.copy({ bucket: fromBucket, key: fromKey }, this.objectKey(key), sizeBytes, sha256 ? { [SHA256_METADATA]: sha256 } : {});
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
    return this.multipart.create(this.objectKey(key), metadata);
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
    await this.multipart.complete(this.objectKey(key), uploadId, parts);
  }

  /** Discards an upload and its parts; an unknown (already finished or aborted) upload is fine. */
  async abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    await this.multipart.abort(this.objectKey(key), uploadId);
  }

  // --- Internals ------------------------------------------------------------------------------

  private objectKey(key: string): string {
    return this.prefix + key;
  }

  private signer() {
    return this.presigner.get();
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

/** `a/b`, `a/b/` and `a/b//` -> `a/b/`; "" stays "". */
function folderOf(prefix: string): string {
  const trimmed = prefix.replace(/\/+$/, "");
  return trimmed === "" ? "" : `${trimmed}/`;
}
