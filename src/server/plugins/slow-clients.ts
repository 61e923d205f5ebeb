import type { ServerOptions } from "node:http";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ConnectionLimits } from "../../config.js";
import { securityHeaderLines } from "./security-headers.js";
import { errorJson } from "../error-body.js";

/**
 * Slow clients, three ways, none of which holds anything but a socket while it lasts:
 *
 * - headers trickled in (slowloris): Node's `headersTimeout` closes the connection with a 408
 *   when the header block is not complete in time;
 * - a body that stalls (an upload whose sender went quiet): the socket's inactivity timeout
 *   destroys the connection, which aborts the upload and removes its temporary data. An idle
 *   timeout, not a total one, because a large upload may legitimately take hours;
 * - a body trickled just fast enough to dodge the idle timeout into a route that buffers it
 *   (JSON): `limitBufferedBodyTime` below.
 */
export function nodeServerOptions(limits: ConnectionLimits): ServerOptions {
  return {
    headersTimeout: limits.headersTimeoutSeconds * 1000,
    // Node checks header deadlines on this interval (default 30 s, which would let a slowloris
    // client stay far beyond a short headersTimeout); once a second is cheap.
    connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutSeconds * 1000),
    maxHeaderSize: limits.maxHeaderBytes,
  };
}

/**
 * A request's handler starts only once a buffered body has fully arrived, while a streaming
 * route (uploads) gets its body as a stream and starts at once. So "the handler has not started
 * `timeoutMs` after the headers" means a buffered body is being trickled: answer 408 and close.
 */
export function limitBufferedBodyTime(app: FastifyInstance, timeoutMs: number): void {
  const timers = new WeakMap<FastifyRequest, NodeJS.Timeout>();
  const clear = async (request: FastifyRequest) => {
    clearTimeout(timers.get(request));
    timers.delete(request);
  };
  app.addHook("onRequest", async (request) => {
    const timer = setTimeout(() => {
      timers.delete(request);
      request.log.info("request body too slow: connection closed");
      const socket = request.raw.socket;
      // The reply has not started (the handler never ran), so a whole response can be written.
      // Destroying the socket then aborts the body parser, which has nothing left to answer.
      const body = errorJson("REQUEST_TIMEOUT", `request not received within ${timeoutMs / 1000} s`);
      if (!request.raw.complete && socket.writable && !socket.destroyed)
        socket.end(rawResponse(408, "Request Timeout", body), () => socket.destroy());
      else socket.destroy();
    }, timeoutMs);
    timer.unref();
    timers.set(request, timer);
  });
  app.addHook("preValidation", clear);
  app.addHook("onResponse", clear);
  app.addHook("onRequestAbort", clear);
}

/** A complete HTTP/1.1 response written straight to a socket, for answers outside Fastify's reply. */
export function rawResponse(status: number, reason: string, jsonBody: string): string {
  return (
    `HTTP/1.1 ${status} ${reason}\r\n` +
    `content-type: application/json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(jsonBody)}\r\n` +
    securityHeaderLines() +
    `connection: close\r\n\r\n${jsonBody}`
  );
}
