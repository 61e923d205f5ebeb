import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { ServerProcess } from "../harness/server.js";
import { startStores, type TestStores } from "../harness/stores.js";
import { sha256 } from "../helpers/api.js";
import { createKey, eventually, parseRawResponse, projectAndJob, rawConnection, serveOn, trickle } from "./support.js";

/**
 * Slow and stalled clients against `ckpt serve` with short limits (1 s for headers and buffered
 * bodies, 3 s of silence): each is cut off, holds nothing meanwhile, and leaves nothing behind; a
 * slow but steady upload is not cut off. (The idle limit is longer than the others so that a test
 * process starved of CPU on a loaded machine, pausing its trickle, is not mistaken for silence.)
 * The assertions are about what happens, never how fast: the trickles are long enough that
 * finishing them would take far longer than the limits.
 */
let stores: TestStores;
let server: ServerProcess;
let key: string;
let jobPath: string;
before(async () => {
  stores = await startStores();
  server = await serveOn(stores, { CKPT_HEADERS_TIMEOUT: "1", CKPT_REQUEST_TIMEOUT: "1", CKPT_IDLE_TIMEOUT: "3" });
  key = await createKey(stores);
  ({ jobPath } = await projectAndJob(server.baseUrl, key));
});
after(async () => {
  server.child.kill("SIGKILL");
  await server.exited;
  await stores.stop();
});

const byteByByte = (s: string) => [...s];

describe("slow clients", () => {
  test("slowloris: twenty clients trickling headers are cut off with a 408, and others are served meanwhile", async () => {
    const header = `GET /v1/training_projects HTTP/1.1\r\nhost: x\r\nauthorization: Api-Key ${key}\r\nx-slow: ${"s".repeat(200)}\r\n\r\n`;
    const slow = Array.from({ length: 20 }, () => rawConnection(server.baseUrl));
    // One byte every 50 ms: the whole header block would take ~15 s to send.
    const trickles = slow.map((c) => trickle(c.socket, byteByByte(header), 50));
    const listing = await fetch(`${server.baseUrl}/v1/training_projects`, { headers: { authorization: `Api-Key ${key}` } });
    assert.equal(listing.status, 200, "a normal client is served while the slow ones hang on");
    for (const [i, c] of slow.entries()) {
      assert.equal(await trickles[i], false, "the server closed the connection before the headers were complete");
      await c.closed;
      const r = parseRawResponse(c.received());
      assert.equal(r.status, 408);
      assert.match(r.body.message, /headers did not arrive in time/);
    }
  });

  test("a JSON body trickled in is cut off with a 408 and creates nothing", async () => {
    const body = JSON.stringify({ training_project: { name: `slow-${"x".repeat(300)}` } });
    const c = rawConnection(server.baseUrl);
    c.socket.write(
      `POST /v1/training_projects HTTP/1.1\r\nhost: x\r\nauthorization: Api-Key ${key}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`,
    );
    // A byte every 200 ms never trips the idle timeout, and would take over a minute.
    assert.equal(await trickle(c.socket, byteByByte(body), 200), false);
    await c.closed;
    const r = parseRawResponse(c.received());
    assert.equal(r.status, 408);
    assert.equal(typeof r.body.message, "string");
    const projects = await fetch(`${server.baseUrl}/v1/training_projects`, { headers: { authorization: `Api-Key ${key}` } });
    assert.ok(!(await projects.text()).includes("slow-"), "no project was created");
  });

  test("an upload that stalls is aborted: not listed, its temporary data removed", async () => {
    const c = rawConnection(server.baseUrl);
    c.socket.write(
      `PUT ${jobPath}/checkpoint_files/0/stalled.bin HTTP/1.1\r\nhost: x\r\nauthorization: Api-Key ${key}\r\ncontent-length: 30000000\r\n\r\n`,
    );
    // Over one S3 part (8 MiB), so that on S3 too the upload has stored something to clean up.
    c.socket.write(randomBytes(9 << 20));
    await eventually("the upload has started writing", async () => (await stores.pendingUploads()).length > 0);
    await c.closed; // by the server: the client never closes it
    await eventually("the temporary data is removed", async () => (await stores.pendingUploads()).length === 0);
    const listed = await (await fetch(`${server.baseUrl}${jobPath}/checkpoint_files`, { headers: { authorization: `Api-Key ${key}` } })).json();
    assert.equal((listed as any).total_count, 0);
  });

  test("a slow but steady upload, longer than every timeout, completes", async () => {
    const chunks = Array.from({ length: 10 }, () => randomBytes(10_000));
    const c = rawConnection(server.baseUrl);
    c.socket.write(
      `PUT ${jobPath}/checkpoint_files/0/steady.bin HTTP/1.1\r\nhost: x\r\nauthorization: Api-Key ${key}\r\ncontent-length: 100000\r\nconnection: close\r\n\r\n`,
    );
    // A chunk every 400 ms: 4 s in all, longer than the request and idle timeouts.
    assert.equal(await trickle(c.socket, chunks, 400), true, "the server let the whole body in");
    await c.closed;
    const r = parseRawResponse(c.received());
    assert.equal(r.status, 201, c.received().slice(0, 300));
    const file = await fetch(r.body.url);
    assert.equal(sha256(Buffer.from(await file.arrayBuffer())), sha256(Buffer.concat(chunks)));
  });
});
