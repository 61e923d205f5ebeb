import { BlobIntegrityError, BlobNoSpaceError } from "../store.js";

export function errorNameOf(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}

export function httpStatusOf(err: unknown): number | undefined {
  const metadata = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata;
  return metadata?.httpStatusCode;
}

/** `NoSuchBucket (HTTP 404): …`, for messages an operator reads. */
export function describeS3Error(err: unknown): string {
  const status = httpStatusOf(err);
  const name = errorNameOf(err) ?? "Error";
  const message = err instanceof Error && err.message && err.message !== "UnknownError" ? `: ${err.message}` : "";
  return `${name}${status ? ` (HTTP ${status})` : ""}${message}`;
}

/** S3's refusals of a body, as the BlobStore errors the domain maps to 400 and 507. */
export function translatePutError(err: unknown): unknown {
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
