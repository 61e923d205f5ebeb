import type { UrlSigner } from "./url-signing.js";

/** Route under which this server answers presigned downloads of the embedded (local) blob store. */
export const BLOB_ROUTE_PREFIX = "/blobs/";
/** Route that receives the parts of direct uploads to the embedded store (`/blobs/uploads/{upload_id}/{part_number}`). */
export const UPLOAD_PART_ROUTE_PREFIX = "/blobs/uploads/";

const NOTHING_TO_ESCAPE = /^[A-Za-z0-9\-._~/]*$/;

/** Percent-encodes each segment; most keys need none, and that fast path is most of a listing's signing cost. */
export function encodeKeyPath(key: string): string {
  return NOTHING_TO_ESCAPE.test(key) ? key : key.split("/").map(encodeURIComponent).join("/");
}

/** The path a part of a direct upload is PUT to (and signed for). */
export function uploadPartPath(uploadId: string, partNumber: number | string): string {
  return `${UPLOAD_PART_ROUTE_PREFIX}${uploadId}/${partNumber}`;
}

/**
 * The URLs of this server's blob routes, signed: what the embedded store hands out (it knows no
 * route paths; the composition root gives it this). `expiresAt` is in Unix seconds.
 */
export function signedBlobUrls(publicUrl: string, signer: UrlSigner) {
  return {
    download(key: string, expiresAt: number): string {
      const path = BLOB_ROUTE_PREFIX + encodeKeyPath(key);
      return `${publicUrl}${path}?${signer.sign("GET", path, expiresAt)}`;
    },
    uploadPart(uploadId: string, partNumber: number, expiresAt: number): string {
      const path = uploadPartPath(uploadId, partNumber);
      return `${publicUrl}${path}?${signer.sign("PUT", path, expiresAt)}`;
    },
  };
}
