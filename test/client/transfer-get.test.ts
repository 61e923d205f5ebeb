import assert from "node:assert/strict";
import { openSync, closeSync, readFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { ConnectionPool, get, type BodyPlan } from "../../src/client/transfer/get.js";
import { TransferError } from "../../src/client/transfer/http.js";
import { bytes, tempDir } from "./support/fixtures.js";

/**
 * The download GET (transfer/get.ts) against a raw-socket server answering exactly the bytes a
 * test gives it: framings and edge cases the fault matrix (transfer-faults.test.ts) does not
 * reach through the CLI — chunked bodies, interim answers, headers split over many reads,
 * keep-alive reuse and a kept-alive connection the server has closed.
 */
async function rawServer(t: TestContext, answer: (socket: Socket, request: string, n: number) => void): Promise<{ url: string; connections: () => number }> {
  let connections = 0;
  let requests = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("error", () => {});
    let buffered = "";
    socket.on("data", (d) => {
      buffered += d.toString("latin1");
      for (let end = buffered.indexOf("\r\n\r\n"); end !== -1; end = buffered.indexOf("\r\n\r\n")) {
        const request = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        answer(socket, request, ++requests);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/blob?sig=x`, connections: () => connections };
}

/** GETs `url` into a fresh file; resolves with the status, the bytes written, and the file's content. */
async function fetchToFile(t: TestContext, url: string, pool: ConnectionPool, length: number) {
  const dir = tempDir();
  t.after(dir.remove);
  const path = join(dir.path, "out");
  const fd = openSync(path, "w");
  try {
    const plan = (): BodyPlan => ({ kind: "file", fd, position: 0, length, onWritten: () => {} });
    const result = await get({ url, headers: { range: `bytes=0-${length - 1}` }, pool, idleTimeoutMs: 5000, onHead: plan });
    return { status: result.status, written: result.written, content: readFileSync(path) };
  } finally {
    closeSync(fd);
  }
}

test("a chunked body is decoded and written whole; chunk extensions and trailers are skipped", async (t) => {
  const body = bytes(300_000);
  const server = await rawServer(t, (socket) => {
    socket.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
    for (let at = 0; at < body.length; at += 70_000) {
      const piece = body.subarray(at, at + 70_000);
      socket.write(`${piece.length.toString(16)};name=value\r\n`);
      socket.write(piece);
      socket.write("\r\n");
    }
    socket.write("0\r\nx-trailer: yes\r\n\r\n");
  });
  const pool = new ConnectionPool();
  t.after(() => pool.close());
  const got = await fetchToFile(t, server.url, pool, body.length);
  assert.equal(got.status, 200);
  assert.equal(got.written, body.length);
  assert.ok(got.content.equals(body));
});

test("interim 1xx answers are skipped; headers arriving a byte at a time are parsed", async (t) => {
  const body = bytes(5000);
  const server = await rawServer(t, (socket) => {
    const head = `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 206 Partial Content\r\ncontent-range: bytes 0-4999/5000\r\ncontent-length: 5000\r\n\r\n`;
    let i = 0;
    const drip = (): void => {
      if (i < head.length) {
        socket.write(head[i++]!, "latin1");
        setImmediate(drip);
      } else socket.write(body);
    };
    drip();
  });
  const pool = new ConnectionPool();
  t.after(() => pool.close());
  const got = await fetchToFile(t, server.url, pool, body.length);
  assert.equal(got.status, 206);
  assert.ok(got.content.equals(body));
});

test("keep-alive: consecutive GETs share one connection; a connection the server closed while idle is replaced", async (t) => {
  const body = bytes(100_000);
  let closeAfterAnswer = false;
  const server = await rawServer(t, (socket) => {
    socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`);
    socket.write(body);
    if (closeAfterAnswer) setTimeout(() => socket.end(), 20);
  });
  const pool = new ConnectionPool();
  t.after(() => pool.close());
  for (let i = 0; i < 3; i++) assert.ok((await fetchToFile(t, server.url, pool, body.length)).content.equals(body));
  assert.equal(server.connections(), 1, "the three GETs did not reuse the connection");
  closeAfterAnswer = true;
  await fetchToFile(t, server.url, pool, body.length);
  await new Promise((resolve) => setTimeout(resolve, 100)); // the server has closed its end by now
  const again = await fetchToFile(t, server.url, pool, body.length);
  assert.ok(again.content.equals(body), "a GET on the closed keep-alive connection was not retried on a new one");
  assert.equal(server.connections(), 2);
});

test("bytes after a complete body are never written and the connection is not reused", async (t) => {
  const body = bytes(10_000);
  const server = await rawServer(t, (socket) => {
    socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`);
    socket.write(Buffer.concat([body, Buffer.from("HTTP/1.1 200 OK\r\n\r\ngarbage")]));
  });
  const pool = new ConnectionPool();
  t.after(() => pool.close());
  const first = await fetchToFile(t, server.url, pool, body.length);
  assert.equal(first.written, body.length);
  assert.ok(first.content.equals(body));
  await fetchToFile(t, server.url, pool, body.length);
  assert.equal(server.connections(), 2);
});

test("ambiguous or unknown framing is a malformed response, never a guess", async (t) => {
  const heads = [
    "HTTP/1.1 200 OK\r\ncontent-length: 10\r\ntransfer-encoding: chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\ncontent-length: 10\r\ncontent-length: 11\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nx-folded: a\r\n  b\r\ncontent-length: 0\r\n\r\n",
    "HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
  ];
  for (const head of heads) {
    const server = await rawServer(t, (socket) => socket.write(head, "latin1"));
    const pool = new ConnectionPool();
    t.after(() => pool.close());
    await assert.rejects(fetchToFile(t, server.url, pool, 10), (err: unknown) => err instanceof TransferError && /malformed response/.test(err.message), JSON.stringify(head));
  }
});
