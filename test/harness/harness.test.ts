// Tests of the test harness itself: throwaway PostgreSQL and Ceph RGW start, work, and stop
// without leaving processes or directories behind.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { test } from "node:test";
import pg from "pg";
import { GetObjectCommand, ListBucketsCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { postgresAvailable, startPostgres } from "./postgres.js";
import { requireOrSkip } from "./required.js";
import { rgwAvailable, startRgw, type RgwInstance } from "./rgw.js";

/** pids whose command line contains `fragment` (pgrep -f; the fragment is a temp dir path). */
function pgrep(fragment: string): number[] {
  const pattern = fragment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  try {
    return execFileSync("pgrep", ["-f", "--", pattern], { encoding: "utf8" })
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch (e) {
    if ((e as { status?: number }).status === 1) return []; // no match
    throw e;
  }
}

function report(what: string, ms: number): void {
  process.stdout.write(`${what}: ${Math.round(ms)} ms\n`);
}

test("requireOrSkip: available runs; CKPT_REQUIRE_SERVICES=1 turns a missing service into a failure", () => {
  assert.equal(requireOrSkip("postgres", true), true);
  const saved = process.env.CKPT_REQUIRE_SERVICES;
  process.env.CKPT_REQUIRE_SERVICES = "1";
  try {
    assert.throws(() => requireOrSkip("rgw", false), /CKPT_REQUIRE_SERVICES=1.*radosgw/s);
  } finally {
    if (saved === undefined) delete process.env.CKPT_REQUIRE_SERVICES;
    else process.env.CKPT_REQUIRE_SERVICES = saved;
  }
});

test("postgres: throwaway cluster starts, answers, isolates databases, stops cleanly", async (t) => {
  if (!requireOrSkip("postgres", postgresAvailable(), t)) return;
  const t0 = performance.now();
  const server = await startPostgres();
  const startMs = performance.now() - t0;
  assert.ok(server, "postgresAvailable() but startPostgres() returned null");
  t.after(() => server.stop()); // idempotent: also runs when an assertion below fails
  report("postgres start-up", startMs);
  assert.match(server.url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
  assert.ok(pgrep(server.dir).length > 0, "no postgres process found for the instance dir");

  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  try {
    const r = await c.query<{ one: number }>("SELECT 1 AS one");
    assert.equal(r.rows[0]?.one, 1);
    const fsync = await c.query<{ fsync: string }>("SHOW fsync");
    assert.equal(fsync.rows[0]?.fsync, "off");
  } finally {
    await c.end();
  }

  const t1 = performance.now();
  const [urlA, urlB] = await Promise.all([server.createDatabase(), server.createDatabase()]);
  report("postgres createDatabase x2", performance.now() - t1);
  assert.ok(urlA && urlB);
  assert.notEqual(urlA, urlB);
  const a = new pg.Client({ connectionString: urlA });
  const b = new pg.Client({ connectionString: urlB });
  await a.connect();
  await b.connect();
  try {
    await a.query("CREATE TABLE only_in_a (x int)");
    const inB = await b.query("SELECT to_regclass('only_in_a') AS t");
    assert.equal(inB.rows[0]?.t, null);
  } finally {
    await a.end();
    await b.end();
  }
  const named = await server.createDatabase("explicit_name");
  assert.match(named, /\/explicit_name$/);

  const t2 = performance.now();
  await server.stop();
  report("postgres stop", performance.now() - t2);
  await server.stop(); // second call is a no-op
  assert.deepEqual(pgrep(server.dir), [], "postgres processes left after stop()");
  assert.equal(existsSync(server.dir), false, "instance dir left after stop()");
});

async function s3RoundTrip(s3: RgwInstance): Promise<void> {
  const bucket = await s3.createBucket();
  const client = new S3Client(s3.s3Config);
  try {
    const body = `hello from ${bucket} ${Date.now()}`;
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: "dir/hello.txt", Body: body }));
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/hello.txt" }));
    assert.equal(await got.Body?.transformToString(), body);

    // RGW verifies SigV4: the presigned URL works, the same URL with one signature char flipped is 403
    const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: "dir/hello.txt" }), { expiresIn: 300 });
    const sig = /[?&]X-Amz-Signature=([0-9a-f]{64})/.exec(url)?.[1];
    assert.ok(sig, `no X-Amz-Signature in ${url}`);
    const flipped = (sig[0] === "0" ? "1" : "0") + sig.slice(1);
    const tampered = url.replace(`X-Amz-Signature=${sig}`, `X-Amz-Signature=${flipped}`);
    assert.notEqual(tampered, url);

    const good = await fetch(url);
    assert.equal(good.status, 200);
    assert.equal(await good.text(), body);
    const bad = await fetch(tampered);
    const badBody = await bad.text();
    assert.equal(bad.status, 403, badBody);
    assert.match(badBody, /SignatureDoesNotMatch/);
  } finally {
    client.destroy();
  }
}

test("rgw: throwaway Ceph RGW starts, serves S3 with SigV4 checks, stops cleanly", async (t) => {
  if (!requireOrSkip("rgw", rgwAvailable(), t)) return;
  const t0 = performance.now();
  const s3 = await startRgw();
  const startMs = performance.now() - t0;
  assert.ok(s3, "rgwAvailable() but startRgw() returned null");
  t.after(() => s3.stop());
  report("rgw start-up", startMs);
  assert.match(s3.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(s3.region, "us-east-1");
  assert.ok(pgrep(s3.dir).length >= 3, "expected ceph-mon, ceph-osd and radosgw for the instance dir");

  await s3RoundTrip(s3);

  const t2 = performance.now();
  await s3.stop();
  report("rgw stop", performance.now() - t2);
  await s3.stop(); // no-op
  assert.deepEqual(pgrep(s3.dir), [], "ceph processes left after stop()");
  assert.equal(existsSync(s3.dir), false, "instance dir left after stop()");
});

test("rgw: two instances run side by side, isolated from each other", async (t) => {
  if (!requireOrSkip("rgw", rgwAvailable(), t)) return;
  const t0 = performance.now();
  const started = await Promise.allSettled([startRgw(), startRgw()]);
  const instances = started.flatMap((r) => (r.status === "fulfilled" && r.value ? [r.value] : []));
  t.after(() => Promise.all(instances.map((i) => i.stop())));
  for (const r of started) if (r.status === "rejected") throw r.reason;
  report("rgw start-up, 2 instances in parallel", performance.now() - t0);
  const [x, y] = instances;
  assert.ok(x && y);
  assert.notEqual(x.endpoint, y.endpoint);

  await Promise.all([s3RoundTrip(x), s3RoundTrip(y)]);
  const onlyX = await x.createBucket();
  const cy = new S3Client(y.s3Config);
  try {
    const list = await cy.send(new ListBucketsCommand({}));
    assert.ok(!(list.Buckets ?? []).some((b) => b.Name === onlyX), "bucket leaked between instances");
    // x's credentials are unknown to y
    const foreign = new S3Client({ ...y.s3Config, credentials: { accessKeyId: x.accessKeyId, secretAccessKey: x.secretAccessKey } });
    await assert.rejects(foreign.send(new ListBucketsCommand({})), (e: Error) => /InvalidAccessKeyId|AccessDenied|Forbidden/.test(`${e.name} ${e.message}`));
    foreign.destroy();
  } finally {
    cy.destroy();
  }

  await Promise.all(instances.map((i) => i.stop()));
  for (const i of instances) {
    assert.deepEqual(pgrep(i.dir), [], "ceph processes left after stop()");
    assert.equal(existsSync(i.dir), false);
  }
});
