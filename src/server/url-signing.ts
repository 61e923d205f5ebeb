import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { newId } from "../domain/ids.js";

/**
 * HMAC-signed URLs for the embedded blob route. The signature covers the method, the exact
 * (encoded) path and the expiry, so a URL opens one file, for reading only, until it expires.
 * Secrets are keyed by id so they can be rotated: new URLs use the current secret, and URLs of an
 * older secret keep working while that secret is kept in the ring.
 */
const SIGNATURE_PARAMS = {
  expires: "X-Ckpt-Expires",
  keyId: "X-Ckpt-Key-Id",
  signature: "X-Ckpt-Signature",
} as const;

export interface UrlSigningKeyring {
  currentKeyId: string;
  keys: Record<string, string>;
}

export type UrlCheck = "ok" | "expired" | "invalid";

/** How often a followed keyring file is looked at, at most: one stat a second costs nothing. */
const KEYRING_CHECK_INTERVAL_MS = 1000;

export class UrlSigner {
  private keyring!: UrlSigningKeyring;
  private secrets!: Map<string, Buffer>;
  /** Set by followKeyringFile: the file, what it looked like when read, and when it was last checked. */
  private followed: { path: string; version: string; checkedAt: number } | null = null;

  constructor(keyring: UrlSigningKeyring) {
    this.use(keyring);
  }

  private use(keyring: UrlSigningKeyring): void {
    const secrets = new Map(Object.entries(keyring.keys).map(([id, hex]) => [id, Buffer.from(hex, "hex")]));
    if (!secrets.has(keyring.currentKeyId)) throw new Error("url signing keyring has no current key");
    this.keyring = keyring;
    this.secrets = secrets;
  }

  /**
   * Keeps this signer in step with the data directory's keyring file, so `ckpt admin
   * rotate-url-secret` applies to a running server: the file is re-read when it changes (a
   * rotation renames a new file into place, so its inode changes), checked at most once a second
   * on the next sign or check. A file that cannot be read or parsed leaves the keyring as it was.
   */
  followKeyringFile(dataDir: string): this {
    const path = join(dataDir, KEYRING_FILE);
    this.followed = { path, version: fileVersion(path), checkedAt: Date.now() };
    return this;
  }

  private refresh(): void {
    const followed = this.followed;
    if (!followed || Date.now() - followed.checkedAt < KEYRING_CHECK_INTERVAL_MS) return;
    followed.checkedAt = Date.now();
    const version = fileVersion(followed.path);
    if (version === followed.version) return;
    try {
      this.use(JSON.parse(readFileSync(followed.path, "utf8")) as UrlSigningKeyring);
      followed.version = version;
    } catch {
      // Keep signing with the keyring we have; the next check tries again.
    }
  }

  /** Returns the query string (without '?') that authorises `method` on `path` until `expiresAt`. */
  sign(method: "GET" | "PUT", path: string, expiresAtSeconds: number): string {
    this.refresh();
    const keyId = this.keyring.currentKeyId;
    const signature = this.mac(this.secrets.get(keyId)!, method, path, expiresAtSeconds, keyId);
    return `${SIGNATURE_PARAMS.expires}=${expiresAtSeconds}&${SIGNATURE_PARAMS.keyId}=${keyId}&${SIGNATURE_PARAMS.signature}=${signature}`;
  }

  check(method: "GET" | "PUT", path: string, query: URLSearchParams, nowSeconds = Math.floor(Date.now() / 1000)): UrlCheck {
    const expiresRaw = query.get(SIGNATURE_PARAMS.expires);
    const keyId = query.get(SIGNATURE_PARAMS.keyId);
    const signature = query.get(SIGNATURE_PARAMS.signature);
    if (!expiresRaw || !keyId || !signature || !/^[0-9]{1,12}$/.test(expiresRaw)) return "invalid";
    this.refresh();
    const secret = this.secrets.get(keyId);
    if (!secret) return "invalid";
    const expected = Buffer.from(this.mac(secret, method, path, Number(expiresRaw), keyId));
    const given = Buffer.from(signature);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return "invalid";
    // Checked after the signature, so an edited expiry reads as tampering, not as "expired".
    return Number(expiresRaw) < nowSeconds ? "expired" : "ok";
  }

  private mac(secret: Buffer, method: string, path: string, expires: number, keyId: string): string {
    return createHmac("sha256", secret).update(`${method}\n${path}\n${expires}\n${keyId}`).digest("base64url");
  }
}

const KEYRING_FILE = "url-signing-keys.json";

/** Identifies one version of a file: a rename gives a new inode, an edit in place a new mtime. */
function fileVersion(path: string): string {
  try {
    const s = statSync(path);
    return `${s.ino}:${s.mtimeMs}:${s.size}`;
  } catch {
    return "missing";
  }
}

/** Loads the data directory's keyring, creating it (mode 0600) on first start. */
export function loadOrCreateKeyring(dataDir: string): UrlSigningKeyring {
  const path = join(dataDir, KEYRING_FILE);
  if (existsSync(path)) return JSON.parse(readFileSync(path, "utf8")) as UrlSigningKeyring;
  const keyId = newId();
  const keyring: UrlSigningKeyring = { currentKeyId: keyId, keys: { [keyId]: randomBytes(32).toString("hex") } };
  saveKeyring(dataDir, keyring);
  return keyring;
}

function saveKeyring(dataDir: string, keyring: UrlSigningKeyring): void {
  const path = join(dataDir, KEYRING_FILE);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(keyring, null, 2), { mode: 0o600 });
  renameSync(tmp, path);
}

/** Adds a new current secret. With `revokePrevious`, URLs signed before become invalid at once. */
export function rotateKeyring(dataDir: string, revokePrevious: boolean): UrlSigningKeyring {
  const old = loadOrCreateKeyring(dataDir);
  const keyId = newId();
  const keys = revokePrevious ? {} : { ...old.keys };
  keys[keyId] = randomBytes(32).toString("hex");
  const keyring = { currentKeyId: keyId, keys };
  saveKeyring(dataDir, keyring);
  return keyring;
}
