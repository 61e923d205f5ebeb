import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { join } from "node:path";
import { startTestServer, type TestServer } from "../harness/server.js";
import { setupJob, sha256 } from "../helpers/api.js";

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

/** Temporary upload files of the embedded store (the S3 store's staging is covered by its own suite). */
const tmpFiles = () => (server.backend === "sqlite-local" ? readdirSync(join(server.dataDir, "tmp")) : []);

/** Sends a raw HTTP PUT over a socket: a declared length, then only `sent` bytes, then a hang-up. */
async function truncatedPut(path: string, key: string, declared: number, sent: Buffer): Promise<void> {
  const { port } = new URL(server.baseUrl);
  const socket = connect(Number(port), "127.0.0.1");
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  socket.write(
    `PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Api-Key ${key}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${declared}\r\n\r\n`,
  );
  socket.write(sent);
  // Let the server take the partial body in before the connection drops.
  await new Promise((r) => setTimeout(r, 200));
  socket.destroy();
  await new Promise((r) => setTimeout(r, 200));
}

function rawRequest(method: string, path: string, key: string, body: Buffer): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const { port } = new URL(server.baseUrl);
    const req = httpRequest({ host: "127.0.0.1", port: Number(port), path, method, headers: { authorization: `Api-Key ${key}`, "content-length": body.length } }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("PUT checkpoint_files/{rank}/{name}", () => {
  test("answers 201 with the CheckpointFile entry; the digest header is verified", async () => {
    const { upload } = await setupJob(server, "up-ok");
    const bytes = randomBytes(70_000);
    const r = await upload(2, "checkpoint-3/shard.bin", bytes, { "x-ckpt-sha256": sha256(bytes) });
    assert.equal(r.status, 201);
    assert.deepEqual(
      { name: r.body.relative_file_name, rank: r.body.node_rank, size: r.body.size_bytes },
      { name: "checkpoint-3/shard.bin", rank: 2, size: 70_000 },
    );
  });

  test("a digest mismatch is rejected and nothing is kept", async () => {
    const { upload, client, jobPath } = await setupJob(server, "up-digest");
    const r = await upload(0, "bad.bin", Buffer.from("hello"), { "x-ckpt-sha256": sha256("other") });
    assert.equal(r.status, 400);
    assert.match(r.body.message, /sha256/);
    assert.equal((await client.get(`${jobPath}/checkpoint_files`)).body.total_count, 0);
    assert.deepEqual(tmpFiles(), []);
    const malformed = await upload(0, "bad.bin", Buffer.from("hello"), { "x-ckpt-sha256": "XYZ" });
    assert.equal(malformed.status, 400);
  });

  test("a replacement that fails its digest leaves the previous version intact", async () => {
    const { upload, client, jobPath } = await setupJob(server, "up-keep-old");
    assert.equal((await upload(0, "m.bin", Buffer.from("good"))).status, 201);
    assert.equal((await upload(0, "m.bin", Buffer.from("evil"), { "x-ckpt-sha256": sha256("nope") })).status, 400);
    const listed = (await client.get(`${jobPath}/checkpoint_files`)).body.presigned_urls;
    assert.equal(listed.length, 1);
    assert.equal(await (await fetch(listed[0].url)).text(), "good");
  });

  test("a short body (client hangs up early) is rejected: nothing listed, no temporary file left", async () => {
    const { key, jobPath, client } = await setupJob(server, "up-short");
    await truncatedPut(`${jobPath}/checkpoint_files/0/partial.bin`, key, 1_000_000, randomBytes(300_000));
    assert.equal((await client.get(`${jobPath}/checkpoint_files`)).body.total_count, 0);
    assert.deepEqual(tmpFiles(), []);
    // The server is unharmed.
    assert.equal((await client.get(`${jobPath}/checkpoint_files`)).status, 200);
  });

  const badNames: [string, RegExp][] = [
    ["a//b", /empty path segment/],
    ["a/./b", /'\.' or '\.\.'/],
    ["a/%2E%2E/b", /'\.' or '\.\.'/],
    ["..", /'\.' or '\.\.'/],
    ["dir/", /empty path segment/],
    ["back%5Cslash", /backslash/],
    ["nul%00byte", /control/],
    ["tab%09x", /control/],
    ["del%7Fx", /control/],
    [`${"a".repeat(1025)}`, /1024 bytes/],
  ];
  for (const [raw, why] of badNames) {
    test(`bad name ${raw.slice(0, 40)} is a 400 that says what is wrong`, async () => {
      const { key, jobPath } = await setupJob(server, `up-name-${raw.slice(0, 20)}`);
      // node:http sends the path as written; fetch would normalise "./" and "../" away first.
      const r = await rawRequest("PUT", `${jobPath}/checkpoint_files/0/${raw}`, key, Buffer.from("x"));
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.match(r.body.message, why);
    });
  }

  test("an empty name (no path after the rank) is refused", async () => {
    const { client, jobPath } = await setupJob(server, "up-empty-name");
    const r = await client.put(`${jobPath}/checkpoint_files/0/`, Buffer.from("x"));
    assert.ok(r.status === 400 || r.status === 404, String(r.status));
    assert.equal(typeof r.body.message, "string");
  });

  for (const rank of ["-1", "65536", "01", "1.5", "x", "99999999999"]) {
    test(`node_rank ${rank} is a 400`, async () => {
      const { client, jobPath } = await setupJob(server, `up-rank-${rank}`);
      const r = await client.put(`${jobPath}/checkpoint_files/${rank}/a.bin`, Buffer.from("x"));
      assert.equal(r.status, 400);
      assert.match(r.body.message, /node_rank/);
    });
  }

  test("re-uploading a name replaces it and keeps its place in the listing", async () => {
    const { upload, client, jobPath } = await setupJob(server, "up-replace");
    for (const n of ["a", "b", "c"]) assert.equal((await upload(0, n, Buffer.from(n))).status, 201);
    const replaced = await upload(0, "b", Buffer.from("bigger b"));
    assert.equal(replaced.status, 201);
    assert.equal(replaced.body.size_bytes, 8);
    const listed = (await client.get(`${jobPath}/checkpoint_files`)).body;
    assert.equal(listed.total_count, 3);
    assert.deepEqual(listed.presigned_urls.map((f: any) => f.relative_file_name), ["a", "b", "c"]);
    assert.equal(await (await fetch(listed.presigned_urls[1].url)).text(), "bigger b");
  });

  test("the same name on two ranks is two files", async () => {
    const { upload, client, jobPath } = await setupJob(server, "up-ranks");
    assert.equal((await upload(0, "w.bin", Buffer.from("zero"))).status, 201);
    assert.equal((await upload(1, "w.bin", Buffer.from("one"))).status, 201);
    const files = (await client.get(`${jobPath}/checkpoint_files`)).body.presigned_urls;
    assert.deepEqual(files.map((f: any) => [f.node_rank, f.size_bytes]), [[0, 4], [1, 3]]);
  });

  test("a name that would be both a file and a folder is a 409", async () => {
    const { upload } = await setupJob(server, "up-conflict");
    assert.equal((await upload(0, "a", Buffer.from("file"))).status, 201);
    const r = await upload(0, "a/b", Buffer.from("under a"));
    assert.equal(r.status, 409);
    assert.equal(typeof r.body.message, "string");
    assert.deepEqual(tmpFiles(), []);
  });

  test("empty files upload and list with size 0", async () => {
    const { upload, client, jobPath } = await setupJob(server, "up-empty");
    assert.equal((await upload(0, "empty", Buffer.alloc(0))).status, 201);
    const [f] = (await client.get(`${jobPath}/checkpoint_files`)).body.presigned_urls;
    assert.equal(f.size_bytes, 0);
    const r = await fetch(f.url);
    assert.equal(r.status, 200);
    assert.equal((await r.arrayBuffer()).byteLength, 0);
  });

  test("uploads in parallel all land with distinct, dense positions", async () => {
    const { upload, client, jobPath } = await setupJob(server, "up-parallel");
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => upload(i % 3, `p/${i}`, randomBytes(1000))));
    assert.ok(results.every((r) => r.status === 201));
    const listed = (await client.get(`${jobPath}/checkpoint_files`)).body;
    assert.equal(listed.total_count, 40);
    assert.equal(new Set(listed.presigned_urls.map((f: any) => `${f.node_rank}/${f.relative_file_name}`)).size, 40);
  });

  test("a job deleted while its upload is in flight keeps nothing", async () => {
    const { key, client, jobPath } = await setupJob(server, "up-delete-race");
    const { port } = new URL(server.baseUrl);
    const socket = connect(Number(port), "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    const body = randomBytes(200_000);
    let response = "";
    socket.on("data", (d) => (response += d));
    socket.write(`PUT ${jobPath}/checkpoint_files/0/late.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Api-Key ${key}\r\nContent-Length: ${body.length}\r\n\r\n`);
    socket.write(body.subarray(0, 1000));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await client.del(jobPath)).status, 200);
    socket.write(body.subarray(1000));
    await new Promise<void>((resolve) => socket.on("end", () => resolve()).on("close", () => resolve()));
    assert.match(response, /^HTTP\/1.1 404/);
    assert.equal((await client.get(`${jobPath}/checkpoint_files`)).status, 404);
    assert.deepEqual(tmpFiles(), []);
  });
});
