import { CkptApiError } from "../errors.js";

/** A presigned-URL request that failed: HTTP status (0 when no answer came) and what the server said. */
export class BlobRequestError extends CkptApiError {
  constructor(
    status: number,
    message: string,
    /** The server's Retry-After, when it sent one. */
    readonly retryAfterMs?: number,
  ) {
    super(status, message);
    this.name = "BlobRequestError";
  }
}

/** The file changed or disappeared on the server: its partial download is worthless. */
export class RemoteChangedError extends Error {
  override name = "RemoteChangedError";
}

/** The server answered a ranged request with the whole file: this file must be fetched in one piece. */
export class RangeNotHonouredError extends Error {
  override name = "RangeNotHonouredError";
}

/** The downloaded bytes do not match the digest the server announced. */
export class IntegrityError extends Error {
  override name = "IntegrityError";
}

/** A listed name that must not become a local path (escapes the folder, or passes a symlink). */
export class UnsafePathError extends Error {
  override name = "UnsafePathError";
}
