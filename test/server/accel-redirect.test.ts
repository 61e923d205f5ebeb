import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadServerConfig } from "../../src/config.js";
import { BLOB_ROUTE_PREFIX } from "../../src/server/blob-urls.js";
import { UrlSigner, loadOrCreateKeyring } from "../../src/server/url-signing.js";
import { servicesRequired } from "../harness/required.js";
import { freePort, runCli, spawnServer, type ServerProcess } from "../harness/server.js";
import { api, sha256, type Api } from "../helpers/api.js";

/**
 * `ckpt serve --accel-redirect` behind Debian's nginx, both real processes on loopback: ckpt
 * verifies each download and answers with X-Accel-Redirect, nginx sends the file. The nginx
 * configuration is the README's, with ports and paths filled in.
 */

const NGINX = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => existsSync(p));
const INTERNAL_PREFIX = "/_ckpt_blobs";

/** requireOrSkip's policy (test/harness/required.ts), for a service it does not list. */
function nginxOrSkip(): boolean {
  if (NGINX) return true;
  const message = "X-Accel-Redirect suite — install nginx (apt-get install nginx) to run it";
  if (servicesRequired()) throw new Error(`CKPT_REQUIRE_SERVICES=1 but nginx is not available: ${message}`);
  const bar = "!".repeat(78);
  process.stderr.write(`\n${bar}\n!!! SKIPPED: ${message}\n${bar}\n\n`);
  return false;
}

function nginxConfig(o: { dir: string; port: number; upstream: string; blobDir: string }): string {
  return `daemon off;
worker_processes 1;
${process.getuid?.() === 0 ? "user root;" : ""}
pid ${o.dir}/nginx.pid;
error_log ${o.dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${o.dir}/body;
  proxy_temp_path ${o.dir}/proxy;
  fastcgi_temp_path ${o.dir}/fastcgi;
  uwsgi_temp_path ${o.dir}/uwsgi;
  scgi_temp_path ${o.dir}/scgi;

  upstream ckpt { server ${o.upstream.replace(/^http:\/\//, "")}; keepalive 16; }
  server {
    listen 127.0.0.1:${o.port};
    client_max_body_size 0;

    location / {
      proxy_pass http://ckpt;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }

    location ${INTERNAL_PREFIX}/ {
      internal;
      alias ${o.blobDir}/;
      sendfile on;
      tcp_nopush on;
      # nginx keeps only a few upstream headers on X-Accel-Redirect; these it would drop.
      add_header X-Ckpt-Sha256 $upstream_http_x_ckpt_sha256 always;
      add_header X-Content-Type-Options nosniff always;
      add_header Content-Security-Policy "default-src 'none'; frame-ancestors 'none'" always;
      add_header X-Frame-Options DENY always;
      add_header Referrer-Policy no-referrer always;
      add_header Cross-Origin-Resource-Policy same-origin always;
    }
  }
}
`;
}

interface Nginx {
  baseUrl: string;
  child: ChildProcess;
  errors(): string;
}

async function startNginx(o: { dir: string; port: number; upstream: string; blobDir: string }): Promise<Nginx> {
  const conf = join(o.dir, "nginx.conf");
  writeFileSync(conf, nginxConfig(o));
  const child = spawn(NGINX!, ["-p", o.dir, "-c", conf, "-e", join(o.dir, "error.log")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const baseUrl = `http://127.0.0.1:${o.port}`;
  const errors = () => stderr + (existsSync(join(o.dir, "error.log")) ? readFileSync(join(o.dir, "error.log"), "utf8") : "");
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${errors()}`);
    if ((await fetch(`${baseUrl}/healthz`).then((r) => r.status, () => 0)) === 200) return { baseUrl, child, errors };
    if (i > 300) throw new Error(`nginx did not come up: ${errors()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const bytes = randomBytes(3 << 20);
const oddName = "odd names/a b+c%d#é.bin";

describe("ckpt serve --accel-redirect behind nginx", { skip: !nginxOrSkip() }, () => {
  let dir: string;
  let ckpt: ServerProcess;
  let nginx: Nginx;
  let client: Api;
  let jobPath: string;
  /** relative_file_name → presigned URL, from the listing (through nginx). */
  const urls = new Map<string, string>();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ckpt-accel-"));
    const dataDir = join(dir, "data");
    const nginxDir = join(dir, "nginx");
    mkdirSync(nginxDir);
    const port = await freePort();
    ckpt = await spawnServer(dataDir, { CKPT_ACCEL_REDIRECT: INTERNAL_PREFIX, CKPT_PUBLIC_URL: `http://127.0.0.1:${port}` });
    nginx = await startNginx({ dir: nginxDir, port, upstream: ckpt.baseUrl, blobDir: join(dataDir, "blobs") });
    const created = await runCli(["admin", "create-key", "--org", "acme", "--data-dir", dataDir]);
    assert.equal(created.code, 0, created.stderr);
    // The whole API goes through nginx, as in production: uploads included.
    client = api(nginx.baseUrl, created.stdout.trim());
    const project = (await client.post("/v1/training_projects", { training_project: { name: "p" } })).body.training_project;
    const job = (await client.post(`/v1/training_projects/${project.id}/jobs`, { training_job: {} })).body.training_job;
    jobPath = `/v1/training_projects/${project.id}/jobs/${job.id}`;
    for (const name of ["model.bin", oddName, "small.json"]) {
      const body = name === "small.json" ? Buffer.from('{"a":1}') : bytes;
      const put = await client.put(`${jobPath}/checkpoint_files/0/${name.split("/").map(encodeURIComponent).join("/")}`, body);
      assert.equal(put.status, 201, JSON.stringify(put.body));
    }
    const listed = await client.get(`${jobPath}/checkpoint_files`);
    assert.equal(listed.status, 200);
    for (const f of listed.body.presigned_urls) urls.set(f.relative_file_name, f.url);
    assert.ok(urls.get("model.bin")!.startsWith(`${nginx.baseUrl}/blobs/`), "presigned URLs name nginx");
  });

  after(async () => {
    nginx?.child.kill("SIGTERM");
    ckpt?.child.kill("SIGTERM");
    await ckpt?.exited;
    if (nginx && nginx.child.exitCode === null) await new Promise((r) => nginx.child.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  });

  test("a whole GET is the exact bytes, sent by nginx, with the digest, an ETag and the security headers", async () => {
    const r = await fetch(urls.get("model.bin")!);
    assert.equal(r.status, 200);
    assert.equal(sha256(Buffer.from(await r.arrayBuffer())), sha256(bytes));
    assert.match(r.headers.get("server") ?? "", /^nginx/);
    assert.equal(r.headers.get("content-length"), String(bytes.length));
    assert.equal(r.headers.get("x-ckpt-sha256"), sha256(bytes));
    assert.equal(r.headers.get("accept-ranges"), "bytes");
    assert.equal(r.headers.get("content-type"), "application/octet-stream");
    assert.equal(r.headers.get("cache-control"), "private, max-age=0");
    assert.equal(r.headers.get("x-content-type-options"), "nosniff");
    assert.ok(r.headers.get("etag"));
    assert.equal(r.headers.get("x-accel-redirect"), null, "the internal location is not shown to clients");
  });

  test("names that need percent-encoding and tiny files come through whole", async () => {
    const odd = await fetch(urls.get(oddName)!);
    assert.equal(odd.status, 200, nginx.errors());
    assert.equal(sha256(Buffer.from(await odd.arrayBuffer())), sha256(bytes));
    const small = await fetch(urls.get("small.json")!);
    assert.equal(await small.text(), '{"a":1}');
  });

  test("ckpt itself sends no bytes: only the redirect nginx follows", async () => {
    const u = new URL(urls.get("model.bin")!);
    const r = await fetch(ckpt.baseUrl + u.pathname + u.search);
    assert.equal(r.status, 200);
    assert.equal((await r.arrayBuffer()).byteLength, 0);
    assert.equal(r.headers.get("x-accel-redirect"), INTERNAL_PREFIX + u.pathname.slice(BLOB_ROUTE_PREFIX.length - 1));
  });

  test("Range answers 206 with the right bytes; If-Range with the current ETag too, a stale one the whole file", async () => {
    const url = urls.get("model.bin")!;
    const r = await fetch(url, { headers: { range: "bytes=100-1099" } });
    assert.equal(r.status, 206);
    assert.equal(r.headers.get("content-range"), `bytes 100-1099/${bytes.length}`);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), bytes.subarray(100, 1100));
    const suffix = await fetch(url, { headers: { range: "bytes=-10" } });
    assert.equal(suffix.status, 206);
    assert.deepEqual(Buffer.from(await suffix.arrayBuffer()), bytes.subarray(bytes.length - 10));
    const etag = r.headers.get("etag")!;
    const same = await fetch(url, { headers: { range: "bytes=0-9", "if-range": etag } });
    assert.equal(same.status, 206);
    assert.deepEqual(Buffer.from(await same.arrayBuffer()), bytes.subarray(0, 10));
    const stale = await fetch(url, { headers: { range: "bytes=0-9", "if-range": '"0-0"' } });
    assert.equal(stale.status, 200);
    assert.equal(Number(stale.headers.get("content-length")), bytes.length);
    await stale.arrayBuffer();
    const beyond = await fetch(url, { headers: { range: `bytes=${bytes.length}-` } });
    assert.equal(beyond.status, 416);
    await beyond.arrayBuffer();
  });

  test("HEAD answers the headers without a body", async () => {
    const r = await fetch(urls.get("model.bin")!, { method: "HEAD" });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-length"), String(bytes.length));
    assert.equal(r.headers.get("x-ckpt-sha256"), sha256(bytes));
    assert.equal((await r.arrayBuffer()).byteLength, 0);
  });

  test("If-Match: the ETag clients are shown passes, any other is 412", async () => {
    const url = urls.get("model.bin")!;
    const etag = (await fetch(url, { method: "HEAD" })).headers.get("etag")!;
    const ok = await fetch(url, { headers: { "if-match": etag, range: "bytes=0-9" } });
    assert.equal(ok.status, 206);
    assert.deepEqual(Buffer.from(await ok.arrayBuffer()), bytes.subarray(0, 10));
    const stale = await fetch(url, { headers: { "if-match": '"1-1"', range: "bytes=0-9" } });
    assert.equal(stale.status, 412);
    assert.equal(((await stale.json()) as { code: string }).code, "PRECONDITION_FAILED");
  });

  test("a tampered URL is 403 and an expired one 403 'expired'; nothing is served", async () => {
    const url = new URL(urls.get("model.bin")!);
    const sig = url.searchParams.get("X-Ckpt-Signature")!;
    url.searchParams.set("X-Ckpt-Signature", sig.slice(0, -1) + (sig.endsWith("A") ? "B" : "A"));
    const tampered = await fetch(url);
    assert.equal(tampered.status, 403);
    assert.equal(((await tampered.json()) as { code: string }).code, "SIGNATURE_MISMATCH");
    const otherFile = await fetch(urls.get("model.bin")!.replace("/model.bin?", "/small.json?"));
    assert.equal(otherFile.status, 403);
    await otherFile.arrayBuffer();

    // A correctly signed URL whose time is up, signed with the server's own keyring.
    const path = new URL(urls.get("model.bin")!).pathname;
    const signer = new UrlSigner(loadOrCreateKeyring(join(dir, "data")));
    const expired = await fetch(`${nginx.baseUrl}${path}?${signer.sign("GET", path, Math.floor(Date.now() / 1000) - 10)}`);
    assert.equal(expired.status, 403);
    const body = (await expired.json()) as { message: string; code: string };
    assert.equal(body.code, "URL_EXPIRED");
    assert.match(body.message, /expired/);
  });

  test("a PUT (or POST, DELETE) to a download URL is 405 Allow: GET, HEAD, through nginx and at ckpt; the file is untouched", async () => {
    const url = new URL(urls.get("model.bin")!);
    for (const origin of [nginx.baseUrl, ckpt.baseUrl])
      for (const method of ["PUT", "POST", "DELETE"]) {
        const r = await fetch(origin + url.pathname + url.search, { method, body: method === "DELETE" ? undefined : Buffer.from("overwrite") });
        assert.equal(r.status, 405, `${method} via ${origin}`);
        assert.equal(r.headers.get("allow"), "GET, HEAD");
        assert.equal(((await r.json()) as { code: string }).code, "METHOD_NOT_ALLOWED");
      }
    const after = await fetch(urls.get("model.bin")!);
    assert.equal(after.status, 200);
    assert.equal(sha256(Buffer.from(await after.arrayBuffer())), sha256(bytes), "the file is as uploaded");
  });

  test("the internal location cannot be requested from outside", async () => {
    const r = await fetch(`${nginx.baseUrl}${INTERNAL_PREFIX}/${new URL(urls.get("model.bin")!).pathname.slice(BLOB_ROUTE_PREFIX.length)}`);
    assert.equal(r.status, 404);
    await r.arrayBuffer();
  });

  test("a replaced version's URL answers 404, the new one fails a stale If-Match; a deleted job's URLs answer 404", async () => {
    const url = urls.get("small.json")!;
    const etag = (await fetch(url, { method: "HEAD" })).headers.get("etag")!;
    const put = await client.put(`${jobPath}/checkpoint_files/0/small.json`, Buffer.from('{"a":1,"b":2}'));
    assert.equal(put.status, 201);
    const old = await fetch(url, { headers: { "if-match": etag } });
    assert.equal(old.status, 404, "each version has its own key: the old URL never reaches the new bytes");
    await old.arrayBuffer();
    const stale = await fetch(put.body.url, { headers: { "if-match": etag } });
    assert.equal(stale.status, 412);
    await stale.arrayBuffer();
    const fresh = await fetch(put.body.url);
    assert.equal(await fresh.text(), '{"a":1,"b":2}');

    assert.equal((await client.del(jobPath)).status, 200);
    const gone = await fetch(urls.get("model.bin")!);
    assert.equal(gone.status, 404);
    await gone.arrayBuffer();
  });
});

describe("--accel-redirect / CKPT_ACCEL_REDIRECT configuration", () => {
  test("an absolute location path is taken, trailing slashes dropped; unset means ckpt sends the bytes", () => {
    assert.equal(loadServerConfig({ accelRedirect: "/_ckpt_blobs/" }, {}).accelRedirect, "/_ckpt_blobs");
    assert.equal(loadServerConfig({}, { CKPT_ACCEL_REDIRECT: "/internal/ckpt-blobs" }).accelRedirect, "/internal/ckpt-blobs");
    assert.equal(loadServerConfig({}, {}).accelRedirect, undefined);
  });

  test("paths nginx would not route as an internal location of their own are refused", () => {
    for (const bad of ["_ckpt_blobs", "/a b", "/x?y", "/../etc", "/blobs", "/blobs/internal", "/v1/x", "http://nginx/x"])
      assert.throws(() => loadServerConfig({ accelRedirect: bad }, {}), ConfigError, bad);
  });

  test("it applies to the local blob store only", () => {
    assert.throws(() => loadServerConfig({ accelRedirect: "/_ckpt_blobs" }, { CKPT_BLOB_STORE: "s3://bucket/prefix" }), /local blob store only/);
  });
});
