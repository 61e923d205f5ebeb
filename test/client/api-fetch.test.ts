import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Socket } from "node:net";
import { Readable } from "node:stream";
import { test } from "node:test";
import { apiFetch } from "../../src/client/transfer/api-fetch.js";

/**
 * apiFetch (the CLI's fetch for API calls) against raw TCP servers that answer exactly as told:
 * a refusal before the body is read, an answer that never ends, the parts of a response the SDK
 * reads.
 */
async function rawServer(onConnection: (socket: Socket) => void): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    onConnection(socket);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, "close");
    },
  };
}

test("a refusal before a streamed body is read ends the exchange: the answer comes back and the connection is closed, not left sending", async () => {
  let closed!: Promise<unknown>;
  const server = await rawServer((socket) => {
    closed = once(socket, "close");
    socket.once("data", () => {
      socket.pause(); // reads nothing more for now: the client's writes back up
      socket.write('HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n{"message":"too big"}');
      // Then it drains whatever comes: a client that goes on sending never lets this close.
      setTimeout(() => socket.resume(), 200);
    });
  });
  try {
    // An endless body: only closing the connection ends this exchange.
    const body = new Readable({ read() { this.push(Buffer.alloc(64 << 10, 7)); } });
    const response = await apiFetch()(`${server.url}/upload`, { method: "PUT", body: body as unknown as RequestInit["body"], duplex: "half" } as RequestInit);
    assert.equal(response.status, 413);
    assert.deepEqual(await response.json(), { message: "too big" });
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error("the client kept the connection open")), 5000))]);
    assert.ok(body.destroyed, "the rest of the body is not read");
  } finally {
    await server.close();
  }
});

test("an answer larger than 64 MiB fails the call instead of filling memory", async () => {
  const server = await rawServer((socket) => {
    socket.once("data", () => {
      socket.write("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
      const chunk = Buffer.alloc(1 << 20, 0x20);
      const more = (): void => {
        while (!socket.destroyed && socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`));
        if (!socket.destroyed) socket.once("drain", more);
      };
      more();
    });
  });
  try {
    await assert.rejects(apiFetch()(`${server.url}/v1/training_projects`), (err: Error) => {
      assert.equal(err.name, "TypeError");
      assert.match(String((err.cause as Error)?.message), /larger than 64 MiB/);
      return true;
    });
  } finally {
    await server.close();
  }
});

test("the response offers what the SDK reads: status, ok, headers (get, has, entries), text, json, arrayBuffer", async () => {
  const server = await rawServer((socket) => {
    socket.once("data", () => socket.end('HTTP/1.1 201 Created\r\ncontent-type: application/json\r\nx-ckpt-sha256: abc\r\ncontent-length: 8\r\nconnection: close\r\n\r\n{"a": 1}'));
  });
  try {
    const response = await apiFetch()(`${server.url}/x`, { method: "POST", body: "{}" });
    assert.equal(response.status, 201);
    assert.equal(response.ok, true);
    assert.equal(response.headers.get("X-Ckpt-Sha256"), "abc");
    assert.equal(response.headers.has("content-type"), true);
    assert.deepEqual(Object.fromEntries(response.headers)["x-ckpt-sha256"], "abc");
    assert.equal(Buffer.from(await response.arrayBuffer()).toString(), '{"a": 1}');
    assert.deepEqual(await response.json(), { a: 1 });
  } finally {
    await server.close();
  }
});
