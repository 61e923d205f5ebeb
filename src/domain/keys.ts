import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { newId } from "./ids.js";

/**
 * API keys look like `ckpt_<keyId>.<secret>`. The key id is public (it names the key in
 * `ckpt admin list-keys` and finds its row); only SHA-256 of the secret is stored. The secret
 * is 256 random bits, so a fast hash is enough: there is nothing to brute-force.
 */
export interface IssuedKey {
  keyId: string;
  secretHash: Buffer;
  /** The full key, shown once and never stored. */
  plaintext: string;
}

const KEY_PATTERN = /^ckpt_([a-z0-9]{8,32})\.([A-Za-z0-9_-]{43})$/;

export function issueKey(): IssuedKey {
  const keyId = newId(12);
  const secret = randomBytes(32).toString("base64url");
  return { keyId, secretHash: hashSecret(secret), plaintext: `ckpt_${keyId}.${secret}` };
}

export function hashSecret(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

export function parseKey(plaintext: string): { keyId: string; secret: string } | null {
  const m = KEY_PATTERN.exec(plaintext);
  return m ? { keyId: m[1]!, secret: m[2]! } : null;
}

const DUMMY_HASH = hashSecret("no such key");

/** Constant-time check; with no stored hash it still does the same work, so timing tells nothing. */
export function secretMatches(secret: string, storedHash: Buffer | null): boolean {
  const candidate = hashSecret(secret);
  const ok = timingSafeEqual(candidate, storedHash ?? DUMMY_HASH);
  return ok && storedHash !== null;
}

/** `Authorization: Api-Key <key>` (Baseten's scheme) or `Bearer <key>`; anything else is null. */
export function keyFromAuthorization(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^(Api-Key|Bearer)[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m ? m[2]! : null;
}

/**
 * A key's owner email is shown to clients as the creator of jobs (Baseten's UserV1), so it must
 * at least look like an address: one "@" with something on both sides, no spaces or control
 * characters, at most 254 characters (RFC 5321's limit). Null when it is acceptable.
 */
export function ownerEmailProblem(email: string): string | null {
  if (email.length > 254) return "an email address has at most 254 characters";
  if (!/^[^\s@\x00-\x1f\x7f]+@[^\s@\x00-\x1f\x7f]+$/.test(email)) return `'${email}' does not look like an email address (name@domain)`;
  return null;
}
