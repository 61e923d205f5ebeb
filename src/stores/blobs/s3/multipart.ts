import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { uriEscapeKey } from "../sigv4-presign.js";
import { BlobIntegrityError } from "../store.js";
import { errorNameOf, httpStatusOf } from "./errors.js";

const MIB = 1024 * 1024;
/** S3's limits: parts of 5 MiB..5 GiB (the last may be smaller), at most 10,000 of them. */
export const MIN_PART_SIZE = 5 * MIB;
export const MAX_PART_SIZE = 5 * 1024 * MIB;
export const MAX_PARTS = 10_000;
/** CopyObject copies at most 5 GiB; larger objects are copied part by part. */
export const MAX_COPY_OBJECT_BYTES = 5 * 1024 * MIB;
export const CONTENT_TYPE = "application/octet-stream";

export interface UploadedPart {
  partNumber: number;
  etag: string;
}

export interface Part {
  data: Buffer;
  /** True for the final part, which is yielded only once the source has ended cleanly. */
  last: boolean;
}

export interface MultipartOptions {
  bucket: string;
  /** Parts uploaded (or copied) at once per upload. */
  partConcurrency: number;
  /** Bodies above this size are copied part by part (at most MAX_COPY_OBJECT_BYTES). */
  multipartCopyThreshold: number;
  /** Part size of a multipart copy (raised when needed to stay within 10,000 parts). */
  copyPartSize: number;
}

/**
 * The one multipart-upload engine of the S3 store: every multipart upload (a streamed put, a
 * server-side copy of a large object, a direct upload's staging object) is created, completed and
 * aborted here. Keys are object keys (the store prefix included).
 */
export class S3Multipart {
  constructor(
    private readonly client: S3Client,
    private readonly options: MultipartOptions,
  ) {}

  /** Starts a multipart upload; its metadata is fixed now. Returns the upload id. */
  async create(objectKey: string, metadata?: Record<string, string>): Promise<string> {
    const res = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.options.bucket, Key: objectKey, ContentType: CONTENT_TYPE, Metadata: metadata }),
    );
    if (!res.UploadId) throw new Error("S3 CreateMultipartUpload returned no UploadId");
    return res.UploadId;
  }

  /** Makes the object appear, atomically, from the parts (given in any order). */
  async complete(objectKey: string, uploadId: string, parts: UploadedPart[]): Promise<void> {
    const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber);
    await this.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.options.bucket,
        Key: objectKey,
        UploadId: uploadId,
        MultipartUpload: { Parts: sorted.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
      }),
    );
  }

  /** Discards an upload and its parts; an unknown (already finished or aborted) upload is fine. */
  async abort(objectKey: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.options.bucket, Key: objectKey, UploadId: uploadId }));
    } catch (err) {
      if (errorNameOf(err) === "NoSuchUpload" || httpStatusOf(err) === 404) return;
      throw err;
    }
  }

  /**
   * Streams parts to a new multipart upload at objectKey and completes it once the source has
   * ended cleanly; aborts it (after in-flight parts settle) on any failure. At most
   * partConcurrency parts are in flight, and the first failure stops reading the body.
   */
  async uploadStream(objectKey: string, parts: AsyncIterable<Part>, metadata: Record<string, string> | undefined): Promise<void> {
    await this.withUpload(objectKey, metadata, async (uploadId, cancel) => {
      const { bucket, partConcurrency } = this.options;
      const inFlight = new Set<Promise<void>>();
      const completed: UploadedPart[] = [];
      let failure: { error: unknown } | null = null;
      try {
        let partNumber = 0;
        for await (const part of parts) {
          if (failure) break;
          const n = ++partNumber;
          if (n > MAX_PARTS) throw new BlobIntegrityError(`a body of undeclared size may be at most ${MAX_PARTS} parts of ${part.data.length} bytes`);
          const task: Promise<void> = this.client
            .send(new UploadPartCommand({ Bucket: bucket, Key: objectKey, UploadId: uploadId, PartNumber: n, Body: part.data, ContentLength: part.data.length }), {
              abortSignal: cancel.signal,
            })
            .then((res) => {
              if (!res.ETag) throw new Error(`S3 UploadPart ${n} returned no ETag`);
              completed.push({ partNumber: n, etag: res.ETag });
            })
            .catch((error: unknown) => {
              failure ??= { error };
              cancel.abort();
            })
            .finally(() => inFlight.delete(task));
          inFlight.add(task);
          while (inFlight.size >= partConcurrency) await Promise.race(inFlight);
        }
        await Promise.all(inFlight);
      } catch (err) {
        cancel.abort();
        await Promise.allSettled(inFlight);
        throw err;
      }
      if (failure) throw (failure as { error: unknown }).error;
      return completed;
    });
  }

  /** Server-side copy with new metadata: CopyObject, or UploadPartCopy parts above the threshold. */
  async copy(from: { bucket: string; key: string }, toKey: string, size: number, metadata: Record<string, string>): Promise<void> {
    const { bucket, partConcurrency, multipartCopyThreshold, copyPartSize } = this.options;
    const copySource = `${from.bucket}/${uriEscapeKey(from.key)}`;
    if (size <= multipartCopyThreshold) {
      await this.client.send(
        new CopyObjectCommand({ Bucket: bucket, Key: toKey, CopySource: copySource, MetadataDirective: "REPLACE", Metadata: metadata, ContentType: CONTENT_TYPE }),
      );
      return;
    }
    const partSize = Math.max(copyPartSize, Math.ceil(size / MAX_PARTS));
    const partCount = Math.ceil(size / partSize);
    await this.withUpload(toKey, metadata, async (uploadId, cancel) => {
      const parts: UploadedPart[] = [];
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < partCount && !cancel.signal.aborted) {
          const index = next++;
          const start = index * partSize;
          const end = Math.min(start + partSize, size) - 1;
          const res = await this.client.send(
            new UploadPartCopyCommand({
              Bucket: bucket,
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
          parts.push({ partNumber: index + 1, etag });
        }
      };
      const workers = Array.from({ length: Math.min(partConcurrency, partCount) }, () =>
        worker().catch((err: unknown) => {
          cancel.abort();
          throw err;
        }),
      );
      const outcomes = await Promise.allSettled(workers);
      const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
      if (failed) throw failed.reason;
      return parts;
    });
  }

  /**
   * Creates an upload, lets `sendParts` fill it (it resolves to the parts once all are in, or
   * rejects), then completes it; any failure aborts it, so nothing partial stays billed.
   */
  private async withUpload(
    objectKey: string,
    metadata: Record<string, string> | undefined,
    sendParts: (uploadId: string, cancel: AbortController) => Promise<UploadedPart[]>,
  ): Promise<void> {
    const uploadId = await this.create(objectKey, metadata);
    const cancel = new AbortController();
    try {
      await this.complete(objectKey, uploadId, await sendParts(uploadId, cancel));
    } catch (err) {
      cancel.abort();
      await this.abort(objectKey, uploadId).catch(() => {});
      throw err;
    }
  }
}

/**
 * Cuts a byte stream into parts of exactly `partSize` bytes plus a final, possibly smaller or
 * empty, one. A part is yielded only once more bytes are known to follow it, so the first part
 * tells whether the body fits in one request, and the last part never leaves before the source
 * has ended without error.
 */
export async function* partsOf(source: AsyncIterable<Buffer>, partSize: number): AsyncGenerator<Part> {
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

export async function* prepend(first: Part, rest: AsyncIterator<Part>): AsyncGenerator<Part> {
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
