import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Pool } from "undici";
import { startTestServer, type TestServer } from "../harness/server.js";
import { api, setupJob, sha256 } from "../helpers/api.js";

/**
 * Property-based tests over every route with hostile input: random and adversarial path
 * parameters, query strings, headers (Authorization variants, huge and duplicate headers) and
 * bodies (wrong JSON types, deep nesting, huge, wrong content types), and mutated presigned URLs.
 * Invariants: never a 5xx; every error is JSON with a `message`; every response carries the
 * security headers; nothing of another organisation is ever served; and the server answers
 * correctly afterwards. CKPT_FUZZ_RUNS=N multiplies the number of cases (a longer run:
 * `CKPT_FUZZ_RUNS=50 node --test dist/test/hardening/fuzz.test.js`).
 */
const SCALE = Number(process.env.CKPT_FUZZ_RUNS ?? 1);
const API_RUNS = Math.round(300 * SCALE);
const BODY_RUNS = Math.round(150 * SCALE);
const URL_RUNS = Math.round(200 * SCALE);

let server: TestServer;
let pool: Pool;
/** The fuzzer's own organisation: its key is the valid one, its ids the real ones. */
let own: Awaited<ReturnType<typeof setupJob>>;
/** Another organisation, whose ids the fuzzer uses but whose key it never has. */
let victim: Awaited<ReturnType<typeof setupJob>>;
let victimUrl: string;
const victimBytes = Buffer.from("the victim's checkpoint bytes ".repeat(100));
let revokedKey: string;
/** Route templates and methods, read from the server's own OpenAPI document: every route, including any added later. */
let routes: { method: string; template: string }[];

before(async () => {
  server = await startTestServer();
  pool = new Pool(server.baseUrl, { connections: 4 });
  victim = await setupJob(server, "victim", "victim-project");
  const put = await victim.upload(0, "ckpt-1/model.bin", victimBytes);
  assert.equal(put.status, 201);
  victimUrl = put.body.url;
  own = await setupJob(server, "fuzzer", "fuzz-project");
  assert.equal((await own.upload(0, "ckpt-1/own.bin", Buffer.from("own"))).status, 201);
  revokedKey = await server.createKey("fuzzer");
  assert.ok(await server.service.metadata.revokeApiKey(/^ckpt_([a-z0-9]+)\./.exec(revokedKey)![1]!));
  const doc = (await api(server.baseUrl, null).get("/openapi.json")).body;
  routes = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([template, ops]) =>
    Object.keys(ops).map((method) => ({ method: method.toUpperCase(), template })),
  );
  routes.push({ method: "GET", template: "/healthz" }, { method: "GET", template: "/openapi.json" });
  assert.ok(routes.length >= 12, `the OpenAPI document lists the routes (${routes.length})`);
});
after(async () => {
  await pool?.close();
  await server?.stop();
});

interface Outcome {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

async function send(method: string, path: string, headers: string[], body?: Buffer | string): Promise<Outcome> {
  // Bounded, so a request the server never answers fails the property instead of hanging it.
  const r = await pool.request({ method, path, headers, body, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text };
}

/** The invariants every response keeps, whatever was sent. */
function checkResponse(what: string, method: string, r: Outcome, apiRoute: boolean): void {
  assert.ok(r.status < 500, `${what}: ${r.status} ${r.text.slice(0, 300)}`);
  assert.equal(r.headers["x-content-type-options"], "nosniff", `${what}: security headers`);
  assert.ok(String(r.headers["content-security-policy"]).includes("default-src 'none'"), `${what}: CSP`);
  if (r.status >= 400 && method !== "HEAD" && (apiRoute || r.status !== 304)) {
    assert.match(String(r.headers["content-type"]), /application\/json/, `${what}: error is JSON`);
    const body = JSON.parse(r.text);
    assert.equal(typeof body.message, "string", `${what}: error has a message`);
    assert.ok(!r.text.includes("    at "), `${what}: no stack trace`);
  }
}

/** The server still does its job: the fuzzer's own listing works, and the victim's file is intact. */
async function checkHealthy(): Promise<void> {
  const r = await api(server.baseUrl, own.key).get("/v1/training_projects");
  assert.equal(r.status, 200, `afterwards the server still answers: ${JSON.stringify(r.body).slice(0, 200)}`);
  assert.ok(Array.isArray(r.body.training_projects));
}

// --- arbitraries ----------------------------------------------------------------------------------

const printable = fc.string({ unit: fc.constantFrom(...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i))), maxLength: 60 });
const oddTokens = fc.constantFrom("", ".", "..", "%", "%00", "%zz", "%2e%2e", "%2F", "a/b", "~", "null", "0", "-1", "65536", "1e400", "0x10", " 1", "\u00e9", "\ud800", "../..");

function paramValue(): fc.Arbitrary<string> {
  return fc.oneof(
    // Real ids, the fuzzer's own and the victim's: the paths that reach the handlers.
    { weight: 4, arbitrary: fc.constantFrom(own.project.id, own.job.id, victim.project.id, victim.job.id, "0") },
    { weight: 2, arbitrary: oddTokens },
    { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: "binary-ascii", minLength: 100, maxLength: 3000 }) },
  );
}

/** A path segment as sent: percent-encoded, or raw with only what HTTP cannot carry encoded. */
function encodeSegment(value: string, raw: boolean): string {
  const safe = value.replace(/[\ud800-\udfff]/g, "\ufffd"); // a lone surrogate cannot be encoded at all
  return raw ? safe.replace(/[^\u0021-\u007e]/gu, (c) => encodeURIComponent(c)) : encodeURIComponent(safe);
}

const queryString = fc
  .array(
    fc.tuple(
      fc.oneof(fc.constantFrom("page_size", "page_token", "X-Ckpt-Signature", "X-Ckpt-Expires"), printable),
      fc.oneof(fc.constantFrom("0", "1", "-1", "1e400", "0x10", "1.5", "NaN", "", "99999999999999999999", "1000000"), fc.nat().map(String), printable),
    ),
    { maxLength: 4 },
  )
  .map((pairs) => (pairs.length ? "?" + pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&") : ""));

function authorization(): fc.Arbitrary<string[]> {
  return fc.oneof(
    { weight: 5, arbitrary: fc.constant<string[]>(["authorization", `Api-Key ${own.key}`]) },
    { weight: 1, arbitrary: fc.constant<string[]>(["authorization", `Bearer ${own.key}`]) },
    { weight: 1, arbitrary: fc.constant<string[]>([]) },
    { weight: 1, arbitrary: fc.constant<string[]>(["authorization", `Api-Key ${revokedKey}`]) },
    { weight: 1, arbitrary: printable.map((v) => ["authorization", v]) },
    { weight: 1, arbitrary: printable.map((v) => ["authorization", `Api-Key ${own.key.slice(0, 20)}${v}`]) },
    // Duplicate Authorization headers: the valid key must not win over junk, or vice versa, silently.
    { weight: 1, arbitrary: printable.map((v) => ["authorization", `Api-Key ${own.key}`, "authorization", `Api-Key ${v}`]) },
    // Huge: beyond the 16 KiB header limit (431), or just under it.
    { weight: 1, arbitrary: fc.integer({ min: 8_000, max: 40_000 }).map((n) => ["authorization", `Api-Key ${own.key}`, "x-padding", "p".repeat(n)]) },
  );
}

const contentType = fc.constantFrom(
  [],
  ["content-type", "application/json"],
  ["content-type", "application/json; charset=utf-8"],
  ["content-type", "application/json; charset=utf-16"],
  ["content-type", "text/plain"],
  ["content-type", "application/x-www-form-urlencoded"],
  ["content-type", "multipart/form-data; boundary=x"],
  ["content-type", "application/octet-stream"],
  ["content-type", ""],
  ["content-type", "application/json", "content-type", "text/plain"],
  ["content-type", "application/json", "content-encoding", "gzip"],
);

const extraHeaders = fc.array(
  fc.tuple(fc.constantFrom("range", "if-match", "if-none-match", "if-range", "x-ckpt-sha256", "x-forwarded-host", "accept", "content-length-junk"), printable),
  { maxLength: 3 },
);

const deep = (depth: number) => `{"training_job":{"name":"deep","x":${"[".repeat(depth)}${"]".repeat(depth)}},"training_project":{"name":"x"}}`;
const jsonBody = (deepWeight: number) => fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
  { weight: 3, arbitrary: fc.jsonValue().map((name) => JSON.stringify({ training_project: { name } })) },
  { weight: 3, arbitrary: fc.dictionary(printable, fc.jsonValue(), { maxKeys: 4 }).map((job) => JSON.stringify({ training_job: job })) },
  {
    weight: 3,
    arbitrary: fc
      .record(
        { priority: fc.jsonValue(), current_status: fc.oneof(fc.jsonValue(), fc.constant("TRAINING_JOB_RUNNING")), error_message: fc.jsonValue(), checkpoint_sync_status: fc.jsonValue() },
        { requiredKeys: [] },
      )
      .map((b) => JSON.stringify(b)),
  },
  { weight: deepWeight, arbitrary: fc.integer({ min: 10, max: 400_000 }).map(deep) },
);
const body = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 13, arbitrary: jsonBody(1) },
  { weight: 1, arbitrary: fc.integer({ min: (1 << 20) + 1, max: 3 << 20 }).map((n) => Buffer.alloc(n, "a")) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: printable },
);

// --- properties -----------------------------------------------------------------------------------

describe("fuzz: hostile requests to every route", () => {
  test(`${API_RUNS} random requests: never a 5xx, always a JSON error with a message, nothing foreign served`, { timeout: 300_000 }, async () => {
    const request = fc.record({
      route: fc.constantFrom(...routes),
      params: fc.array(fc.tuple(paramValue(), fc.boolean()), { minLength: 4, maxLength: 4 }),
      query: queryString,
      auth: authorization(),
      contentType,
      extra: extraHeaders,
      body,
    });
    await fc.assert(
      fc.asyncProperty(request, async (c) => {
        let i = 0;
        const path = c.route.template.replace(/\{[^}]+\}/g, () => {
          const [value, raw] = c.params[i++]!;
          return encodeSegment(value, raw);
        });
        const headers = [...c.auth, ...c.contentType, ...c.extra.flat()];
        const what = `${c.route.method} ${path.slice(0, 120)}${c.query.slice(0, 60)}`;
        let r: Outcome;
        try {
          r = await send(c.route.method, path + c.query, headers, c.route.method === "GET" || c.route.method === "HEAD" ? undefined : c.body);
        } catch (err) {
          // The one way a request may end without a response: the server refusing oversized headers
          // and closing while the client is still writing them.
          const headerBytes = headers.reduce((n, h) => n + h.length, 0) + path.length + c.query.length;
          assert.ok(headerBytes > 16_000, `${what}: ${(err as Error).message}`);
          return;
        }
        checkResponse(what, c.route.method, r, true);
        // Tenancy: the fuzzer's key never gets a success on a path naming the victim's project.
        if (r.status < 300 && path.includes(victim.project.id)) assert.fail(`${what} answered ${r.status} on another organisation's project`);
        await checkHealthy();
      }),
      { numRuns: API_RUNS, includeErrorInReport: true },
    );
    // Nothing of the victim's changed.
    const files = await victim.client.get(`${victim.jobPath}/checkpoint_files`);
    assert.equal(files.body.total_count, 1);
    assert.equal(sha256(Buffer.from(await (await fetch(files.body.presigned_urls[0].url)).arrayBuffer())), sha256(victimBytes));
  });

  test(`${BODY_RUNS} hostile JSON bodies with a valid key and real ids: a 4xx or a success, never a 5xx`, { timeout: 300_000 }, async () => {
    // The first property mostly stops at auth, routing or validation; this one aims at handlers.
    const bodyRoutes = routes.filter((r) => r.method === "POST" || r.method === "PATCH");
    const request = fc.record({ route: fc.constantFrom(...bodyRoutes), body: jsonBody(4) });
    await fc.assert(
      fc.asyncProperty(request, async (c) => {
        const path = c.route.template.replace("{training_project_id}", own.project.id).replace("{training_job_id}", own.job.id);
        const r = await send(c.route.method, path, ["authorization", `Api-Key ${own.key}`, "content-type", "application/json"], c.body);
        checkResponse(`${c.route.method} ${path} ${c.body.slice(0, 80)}`, c.route.method, r, true);
        await checkHealthy();
      }),
      { numRuns: BODY_RUNS, includeErrorInReport: true },
    );
  });

  test(`${URL_RUNS} mutated presigned URLs: only the exact URL, for reading, serves the file`, { timeout: 300_000 }, async (t) => {
    if (server.backend !== "sqlite-local") return t.skip("presigned URLs are S3's on this backend");
    const original = new URL(victimUrl);
    const signed = ["X-Ckpt-Expires", "X-Ckpt-Key-Id", "X-Ckpt-Signature"];
    const mutation = fc.record({
      method: fc.constantFrom("GET", "GET", "GET", "HEAD", "PUT", "POST", "DELETE"),
      path: fc.constantFrom("same", "sibling", "rank", "reencoded", "dotdot", "trailing-slash", "double-slash"),
      drop: fc.subarray(signed),
      set: fc.array(fc.tuple(fc.constantFrom(...signed, "x", "X-Ckpt-signature"), fc.oneof(printable, fc.constantFrom("0", "9999999999999", "-1", "1e10"))), { maxLength: 2 }),
      prepend: fc.array(fc.tuple(fc.constantFrom(...signed), printable), { maxLength: 1 }),
      range: fc.option(fc.oneof(printable.map((v) => `bytes=${v}`), fc.constantFrom("bytes=0-9", "bytes=-5", "bytes=5-", "bytes=0-0,2-3", "bytes=999999-")), { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const params = new URLSearchParams(original.search);
        for (const name of m.drop) params.delete(name);
        for (const [name, value] of m.set) params.set(name, value);
        const prepended = m.prepend.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}&`).join("");
        let path = original.pathname;
        if (m.path === "sibling") path = path.replace("model.bin", "model.bio");
        if (m.path === "rank") path = path.replace("/rank-0/", "/rank-1/");
        if (m.path === "reencoded") path = path.replace("model", "%6Dodel");
        if (m.path === "dotdot") path = path.replace("/ckpt-1/", "/ckpt-1/../ckpt-1/");
        if (m.path === "trailing-slash") path += "/";
        if (m.path === "double-slash") path = path.replace("/ckpt-1/", "/ckpt-1//");
        const query = `?${prepended}${params.toString()}`;
        const r = await send(m.method, path + query, m.range ? ["range", m.range] : []);
        const what = `${m.method} ${path}${query.slice(0, 120)}`;
        checkResponse(what, m.method, r, false);
        if (r.status >= 200 && r.status < 300) {
          const effective = new URLSearchParams(query.slice(1));
          const sameParams = signed.every((name) => effective.get(name) === original.searchParams.get(name));
          assert.ok(["GET", "HEAD"].includes(m.method), `${what}: served for ${m.method}`);
          assert.ok(sameParams && (m.path === "same" || m.path === "reencoded"), `${what}: served with a changed signature, expiry, key or file`);
          if (m.method === "GET") assert.ok(victimBytes.toString().includes(r.text), `${what}: served bytes of the file`);
        }
      }),
      { numRuns: URL_RUNS, includeErrorInReport: true },
    );
    assert.equal(sha256(Buffer.from(await (await fetch(victimUrl)).arrayBuffer())), sha256(victimBytes), "the URL still works");
  });
});
