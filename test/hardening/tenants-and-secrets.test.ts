import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, request } from "undici";
import { freePort, runCli, type ServerProcess } from "../harness/server.js";
import { startStores, type TestStores } from "../harness/stores.js";
import { TokenBuckets } from "../../src/server/plugins/rate-limit.js";
import { api, sha256 } from "../helpers/api.js";
import { createKey, eventually, projectAndJob, serveOn, spawnServe } from "./support.js";

/**
 * A whole session against one `ckpt serve`, in order: keys, uploads, downloads, URL secret
 * rotation picked up by the running server, revocation; then its entire log is searched for
 * every secret the session handled. Then rate limiting, TLS and the proxy set-up on servers
 * of their own.
 */
describe("a full session: URL secret rotation without restart, and no secret in the log", () => {
  let stores: TestStores;
  let server: ServerProcess;
  /** Every secret the session handled; none may appear in the log. */
  const secrets = new Set<string>();
  const AWS_SECRET = `aws-secret-${randomBytes(12).toString("hex")}`;
  let key: string;
  let session: Awaited<ReturnType<typeof projectAndJob>>;
  const bytes = randomBytes(300_000);
  const keyIdOf = (url: string) => new URL(url).searchParams.get("X-Ckpt-Key-Id");
  /** ckpt's own URLs, or S3's on PostgreSQL + S3. */
  const signatureParam = () => (stores.backend === "sqlite-local" ? "X-Ckpt-Signature" : "X-Amz-Signature");
  const remember = (url: string) => (secrets.add(new URL(url).searchParams.get(signatureParam())!), url);
  const keyringFile = () => join(stores.dataDir, "url-signing-keys.json");
  const keyringSecrets = () =>
    existsSync(keyringFile()) ? Object.values(JSON.parse(readFileSync(keyringFile(), "utf8")).keys as Record<string, string>) : [];
  const cli = (...args: string[]) => runCli([...args, "--data-dir", stores.dataDir], { env: stores.env });
  const listedUrl = async () => remember((await session.client.get(`${session.jobPath}/checkpoint_files`)).body.presigned_urls[0].url);

  before(async () => {
    stores = await startStores();
    // Trace: the most the server ever logs. An AWS secret is in its environment (unused on the
    // embedded default; the real one on S3), so that any dump of the environment or config, or
    // of a signing step, would show it.
    const awsSecret = stores.env.AWS_SECRET_ACCESS_KEY ?? AWS_SECRET;
    server = await serveOn(stores, { CKPT_LOG_LEVEL: "trace", AWS_ACCESS_KEY_ID: stores.env.AWS_ACCESS_KEY_ID ?? "AKIAHARDENINGTEST", AWS_SECRET_ACCESS_KEY: awsSecret });
    const created = await cli("admin", "create-key", "--org", "acme");
    assert.equal(created.code, 0, created.stderr);
    key = created.stdout.trim();
    secrets.add(key).add(key.split(".")[1]!).add(awsSecret);
    session = await projectAndJob(server.baseUrl, key);
  });
  after(async () => {
    server.child.kill("SIGKILL");
    await server.exited;
    await stores.stop();
  });

  test("uploads, listings and downloads, including refused ones", async () => {
    for (const s of keyringSecrets()) secrets.add(s);
    const put = await session.client.put(`${session.jobPath}/checkpoint_files/0/ckpt/model.bin`, bytes, { "x-ckpt-sha256": sha256(bytes) });
    assert.equal(put.status, 201);
    const url = remember(put.body.url);
    assert.equal(sha256(Buffer.from(await (await fetch(url)).arrayBuffer())), sha256(bytes));
    assert.equal((await fetch(url, { headers: { range: "bytes=0-99" } })).status, 206);
    // S3 refuses HEAD with a URL signed for GET; ckpt's own URLs allow it.
    if (stores.backend === "sqlite-local") assert.equal((await fetch(url, { method: "HEAD" })).status, 200);
    const tampered = new URL(url);
    const signature = tampered.searchParams.get(signatureParam())!;
    tampered.searchParams.set(signatureParam(), signature.slice(0, -1) + (signature.endsWith("a") ? "b" : "a"));
    secrets.add(tampered.searchParams.get(signatureParam())!);
    assert.equal((await fetch(tampered)).status, 403);
    const wrongSecret = `${key.split(".")[0]}.${randomBytes(32).toString("base64url")}`;
    secrets.add(wrongSecret.split(".")[1]!);
    assert.equal((await api(server.baseUrl, wrongSecret).get("/v1/training_projects")).status, 401);
    assert.equal((await session.client.get(`${session.jobPath}/checkpoint_files?page_size=5`)).status, 200);
  });

  test("rate limiting is off by default: a burst of requests is all answered", async () => {
    const statuses = await Promise.all(Array.from({ length: 40 }, () => session.client.get("/v1/training_projects").then((r) => r.status)));
    assert.deepEqual(new Set(statuses), new Set([200]));
  });

  test("rotate-url-secret reaches the running server; old URLs stay valid until --revoke-previous", async (t) => {
    if (stores.backend !== "sqlite-local") return t.skip("S3 presigned URLs are signed with the store's credentials: there is no URL secret to rotate");
    const first = await listedUrl();
    const rotated = await cli("admin", "rotate-url-secret");
    assert.equal(rotated.code, 0, rotated.stderr);
    for (const s of keyringSecrets()) secrets.add(s);
    let second = first;
    await eventually("the server signs with the new secret", async () => keyIdOf((second = await listedUrl())) !== keyIdOf(first));
    assert.equal((await fetch(first)).status, 200, "a URL of the previous secret still works");
    assert.equal((await fetch(second)).status, 200);

    const revoking = await cli("admin", "rotate-url-secret", "--revoke-previous");
    assert.equal(revoking.code, 0, revoking.stderr);
    for (const s of keyringSecrets()) secrets.add(s);
    let third = second;
    await eventually("the server signs with the newest secret", async () => keyIdOf((third = await listedUrl())) !== keyIdOf(second));
    assert.equal((await fetch(first)).status, 403, "revoked at once");
    assert.equal((await fetch(second)).status, 403, "revoked at once");
    const fresh = await fetch(third);
    assert.equal(fresh.status, 200);
    assert.equal(sha256(Buffer.from(await fresh.arrayBuffer())), sha256(bytes));
  });

  test("revoking the key takes effect on the next request", async () => {
    assert.equal((await session.client.get("/v1/training_projects")).status, 200);
    const revoked = await cli("admin", "revoke-key", key);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal((await session.client.get("/v1/training_projects")).status, 401);
  });

  test("the log of the whole session holds none of its secrets", async () => {
    server.child.kill("SIGTERM");
    assert.equal(await server.exited, 0);
    const log = server.output();
    assert.ok(log.includes("request completed") && log.length > 2000, "the session was logged");
    // Fewer on S3: no URL-signing secrets, nothing rotated.
    assert.ok(secrets.size >= (stores.backend === "sqlite-local" ? 10 : 5), `secrets collected: ${secrets.size}`);
    for (const secret of secrets) assert.ok(!log.includes(secret), `a secret (${secret.slice(0, 6)}…) is in the log`);
  });
});

describe("rate limiting per API key", () => {
  test("token buckets: a burst, then one request per 1/rate seconds, the wait told exactly", () => {
    const buckets = new TokenBuckets({ perSecond: 2, burst: 3 });
    const t0 = 1_000_000;
    assert.deepEqual([0, 0, 0].map(() => buckets.take("k", t0)), [0, 0, 0]);
    assert.equal(buckets.take("k", t0), 500, "the next token is half a second away");
    assert.equal(buckets.take("other", t0), 0, "each key has its own bucket");
    assert.equal(buckets.take("k", t0 + 500), 0);
    assert.equal(buckets.take("k", t0 + 500), 500);
    assert.deepEqual([0, 0, 0, 0].map(() => buckets.take("k", t0 + 60_000)), [0, 0, 0, 500], "an idle key refills to the burst, no more");
    assert.equal(buckets.take("k", t0), 500, "a clock stepping back grants nothing");
  });

  test("beyond the burst a key gets 429 with Retry-After and a JSON message; other keys are unaffected; it recovers", async () => {
    const stores = await startStores();
    // Half a request a second, bursts of 3: the fourth request in a row is over the limit.
    const server = await serveOn(stores, { CKPT_RATE_LIMIT: "0.5:3" });
    try {
      const limited = api(server.baseUrl, await createKey(stores, "busy"));
      const other = api(server.baseUrl, await createKey(stores, "calm"));
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push(await limited.get("/v1/training_projects"));
      assert.deepEqual(statuses.slice(0, 3).map((r) => r.status), [200, 200, 200], "the burst is allowed");
      // The rest come far faster than one per two seconds, so at least one finds the bucket empty.
      const refused = statuses.slice(3).find((r) => r.status === 429);
      assert.ok(refused, `a request beyond the burst is refused: ${statuses.map((r) => r.status)}`);
      assert.equal(refused.body.code, "RATE_LIMITED");
      assert.match(refused.body.message, /rate limit/);
      assert.equal(refused.headers.get("x-content-type-options"), "nosniff");
      const retryAfter = Number(refused.headers.get("retry-after"));
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 2, `Retry-After: ${refused.headers.get("retry-after")}`);
      assert.equal((await other.get("/v1/training_projects")).status, 200, "another key has its own bucket");
      assert.equal((await api(server.baseUrl, "ckpt_nope.nope").get("/v1/training_projects")).status, 401, "a bad key is a 401, not a 429");
      await new Promise((r) => setTimeout(r, retryAfter * 1000));
      assert.equal((await limited.get("/v1/training_projects")).status, 200, "after Retry-After the key is served again");
    } finally {
      server.child.kill("SIGKILL");
      await server.exited;
      await stores.stop();
    }
  });
});

describe("listening beyond loopback", () => {
  test("with --tls-cert/--tls-key on 0.0.0.0: HTTPS only, HSTS, and https presigned URLs that download", async (t) => {
    const stores = await startStores();
    t.after(() => stores.stop());
    const dir = stores.dataDir;
    const cert = join(dir, "cert.pem");
    const keyFile = join(dir, "key.pem");
    const made = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", keyFile, "-out", cert], { encoding: "utf8" });
    if (made.status !== 0) return t.skip(`openssl cannot make a test certificate here: ${made.stderr ?? made.error?.message}`);
    const port = await freePort();
    const server = await spawnServe(["--host", "0.0.0.0", "--port", String(port), "--data-dir", dir, "--tls-cert", cert, "--tls-key", keyFile, "--public-url", `https://127.0.0.1:${port}`], stores.env);
    const agent = new Agent({ connect: { ca: readFileSync(cert) } });
    try {
      const key = await createKey(stores);
      const base = `https://127.0.0.1:${port}`;
      const call = async (method: "GET" | "POST" | "PUT", url: string, body?: string | Buffer) => {
        const r = await request(url, { method, body, dispatcher: agent, headers: { authorization: `Api-Key ${key}`, "content-type": "application/json" } });
        return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
      };
      const health = await call("GET", `${base}/healthz`);
      assert.equal(health.status, 200);
      assert.match(String(health.headers["strict-transport-security"]), /max-age=/);
      const project = JSON.parse((await call("POST", `${base}/v1/training_projects`, JSON.stringify({ training_project: { name: "tls" } }))).text).training_project;
      const job = JSON.parse((await call("POST", `${base}/v1/training_projects/${project.id}/jobs`, JSON.stringify({ training_job: {} }))).text).training_job;
      const put = await call("PUT", `${base}/v1/training_projects/${project.id}/jobs/${job.id}/checkpoint_files/0/a.bin`, Buffer.from("over tls"));
      assert.equal(put.status, 201, put.text);
      const url = JSON.parse(put.text).url as string;
      // ckpt's own URLs take the server's https address; S3's are the store's.
      if (stores.backend === "sqlite-local") assert.ok(url.startsWith("https://"), url);
      // As a downloader fetches it: no API key on a presigned URL (S3 would refuse two kinds of auth).
      assert.equal(await (await request(url, { dispatcher: agent })).body.text(), "over tls");
      await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`), "plain HTTP is not served");
    } finally {
      await agent.close();
      server.child.kill("SIGKILL");
      await server.exited;
    }
  });

  test("with --trust-proxy on 0.0.0.0: the client address comes from X-Forwarded-For, URLs never from X-Forwarded-Host", async () => {
    const stores = await startStores();
    const port = await freePort();
    const server = await spawnServe(["--host", "0.0.0.0", "--port", String(port), "--data-dir", stores.dataDir, "--trust-proxy", "127.0.0.1"], stores.env);
    try {
      const key = await createKey(stores);
      const { jobPath, client } = await projectAndJob(`http://127.0.0.1:${port}`, key);
      assert.equal((await client.put(`${jobPath}/checkpoint_files/0/a.bin`, Buffer.from("x"))).status, 201);
      const r = await client.call("GET", `${jobPath}/checkpoint_files`, undefined, { "x-forwarded-for": "203.0.113.7", "x-forwarded-host": "evil.example", "x-forwarded-proto": "https" });
      assert.equal(r.status, 200);
      assert.ok(!r.body.presigned_urls[0].url.includes("evil"), r.body.presigned_urls[0].url);
      await eventually("the forwarded client address is logged", () => server.output().includes('"ip":"203.0.113.7"'));
    } finally {
      server.child.kill("SIGKILL");
      await server.exited;
      await stores.stop();
    }
  });
});
