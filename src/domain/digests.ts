/**
 * The one rule for what a SHA-256 looks like on the wire (x-ckpt-sha256, x-amz-meta-sha256, the
 * upload bodies, the SDK's journal and manifests): 64 lowercase hex characters. Shared by the
 * server and the SDK, so it imports nothing.
 */
const SHA256_HEX = /^[0-9a-f]{64}$/;

export function isSha256Hex(value: unknown): value is string {
  return typeof value === "string" && SHA256_HEX.test(value);
}
