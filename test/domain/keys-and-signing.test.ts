import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashSecret, issueKey, keyFromAuthorization, parseKey, secretMatches } from "../../src/domain/keys.js";
import { UrlSigner, loadOrCreateKeyring, rotateKeyring } from "../../src/server/url-signing.js";

test("issued keys parse back, match only their own secret, and are never stored whole", () => {
  const key = issueKey();
  const parsed = parseKey(key.plaintext)!;
  assert.equal(parsed.keyId, key.keyId);
  assert.ok(secretMatches(parsed.secret, key.secretHash));
  assert.ok(!secretMatches(parsed.secret, hashSecret("other")));
  assert.ok(!secretMatches(parsed.secret, null));
  assert.ok(!key.secretHash.toString("hex").includes(parsed.secret));
  assert.notEqual(issueKey().plaintext, key.plaintext);
});

test("Authorization header parsing", () => {
  assert.equal(keyFromAuthorization("Api-Key abc"), "abc");
  assert.equal(keyFromAuthorization("Bearer abc"), "abc");
  assert.equal(keyFromAuthorization("api-key   abc  "), "abc");
  for (const bad of [undefined, "", "abc", "Basic abc", "Api-Key", "Api-Key a b", "Api-Keyabc"]) assert.equal(keyFromAuthorization(bad), null, String(bad));
});

test("URL signatures bind method, path and expiry; rotation keeps or revokes old URLs", () => {
  const dir = mkdtempSync(join(tmpdir(), "ckpt-signing-"));
  try {
    const keyring = loadOrCreateKeyring(dir);
    assert.equal(statSync(join(dir, "url-signing-keys.json")).mode & 0o777, 0o600, "secret file is private");
    assert.deepEqual(loadOrCreateKeyring(dir), keyring, "the secret survives restarts");
    const signer = new UrlSigner(keyring);
    const now = 1_800_000_000;
    const q = new URLSearchParams(signer.sign("GET", "/blobs/a", now + 60));
    assert.equal(signer.check("GET", "/blobs/a", q, now), "ok");
    assert.equal(signer.check("PUT", "/blobs/a", q, now), "invalid");
    assert.equal(signer.check("GET", "/blobs/b", q, now), "invalid");
    assert.equal(signer.check("GET", "/blobs/a", q, now + 61), "expired");
    const edited = new URLSearchParams(q);
    edited.set("X-Ckpt-Expires", String(now + 6000));
    assert.equal(signer.check("GET", "/blobs/a", edited, now), "invalid");

    const kept = new UrlSigner(rotateKeyring(dir, false));
    assert.equal(kept.check("GET", "/blobs/a", q, now), "ok", "older URLs stay valid after a plain rotation");
    assert.notEqual(new URLSearchParams(kept.sign("GET", "/blobs/a", now + 60)).get("X-Ckpt-Key-Id"), q.get("X-Ckpt-Key-Id"));
    const revoked = new UrlSigner(rotateKeyring(dir, true));
    assert.equal(revoked.check("GET", "/blobs/a", q, now), "invalid", "older URLs die with --revoke-previous");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
