import type { Agent as HttpAgent, ClientRequest, IncomingHttpHeaders, IncomingMessage } from "node:http";
import type { Agent as HttpsAgent } from "node:https";
import { nodeHttp, nodeHttps } from "./node-http.js";

/**
 * The transfer layer under downloads and uploads: node:http(s) with keep-alive agents. Chosen
 * over undici because undici 7 (the last release for Node 20) throws an uncatchable assertion
 * when a peer sends FIN while a response body is paused under backpressure (nodejs/undici#5360),
 * and over fetch because web streams copy every chunk. Every failure of a request — refused
 * connection, reset, FIN mid-body, malformed or oversized headers, a peer that goes silent —
 * surfaces as one `TransferError` on the request's promise, never as an exception elsewhere.
 */
export interface TransferAgents {
  http: HttpAgent;
  https: HttpsAgent;
}

/** Keep-alive pools; sockets idle longer than 30 s are closed. */
export function createAgents(): TransferAgents {
  const options = { keepAlive: true, keepAliveMsecs: 30_000, maxSockets: 256, maxFreeSockets: 256, scheduling: "lifo" as const };
  return { http: new (nodeHttp().Agent)(options), https: new (nodeHttps().Agent)(options) };
}

/** A request that got no usable answer: the connection failed, closed early, stalled, or spoke no HTTP. */
export class TransferError extends Error {
  override name = "TransferError";
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** No byte for this long, in either direction, fails the request (a stalled body, a dead peer). */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** Response header block limit: far above what S3 or ckpt send, far below what could hurt. */
export const MAX_HEADER_BYTES = 32 << 10;

export interface OpenRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  agents: TransferAgents;
  signal?: AbortSignal;
  idleTimeoutMs?: number;
}

/**
 * Starts a request. `response` resolves at the status line and headers; it and the response
 * stream reject or emit only TransferError (or the signal's AbortError). Late errors of a
 * finished exchange (bytes after the body on a kept-alive socket) are swallowed here.
 */
export function openRequest(options: OpenRequest): {
  request: ClientRequest;
  response: Promise<IncomingMessage>;
  /** Why this side ended the exchange (the idle timeout), if it did: the better message than the socket's. */
  ownFailure(): TransferError | null;
} {
  const target = new URL(options.url);
  const secure = target.protocol === "https:";
  if (!secure && target.protocol !== "http:") throw new TransferError(`unsupported URL scheme ${target.protocol}`);
  const request = (secure ? nodeHttps() : nodeHttp()).request(target, {
    method: options.method,
    headers: options.headers,
    agent: secure ? options.agents.https : options.agents.http,
    signal: options.signal,
    maxHeaderSize: MAX_HEADER_BYTES,
  });
  const idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  let own: TransferError | null = null;
  request.setTimeout(idleMs, () => {
    own = new TransferError(`no data for ${Math.round(idleMs / 1000)} s`, "ETIMEDOUT");
    request.destroy(own);
  });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    request.once("response", (res) => {
      // A response stream error is the request's error: one place to translate it.
      res.on("error", () => {});
      resolve(res);
    });
    request.on("error", (err) => reject(translate(own ?? err)));
  });
  response.catch(() => {});
  return { request, response, ownFailure: () => own };
}

/** Why a transfer failed, in words for a user, without the URL (a presigned URL is a secret). */
export function translate(err: unknown): Error {
  if (err instanceof TransferError || (err as Error).name === "AbortError") return err as Error;
  const code = (err as NodeJS.ErrnoException).code;
  const message = (err as Error).message ?? String(err);
  if (code === "HPE_HEADER_OVERFLOW") return new TransferError(`the response headers exceed ${MAX_HEADER_BYTES >> 10} KiB`, code);
  if (code?.startsWith("HPE_")) return new TransferError(`the server sent a malformed response (${code})`, code);
  return new TransferError(`network error: ${message}${code && !message.includes(code) ? ` (${code})` : ""}`, code);
}

/** A response header's value (the first, when it is repeated). */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Reads a (small) response body whole, at most `limit` bytes (an error body, an upload's JSON
 * answer): a peer that sends more gets its connection closed, not our memory.
 */
export async function readSmallBody(response: IncomingMessage, limit = 1 << 20): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    response.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        response.destroy();
        reject(new TransferError(`the response body exceeds ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    response.once("end", () => resolve(Buffer.concat(chunks)));
    response.once("close", () => {
      if (!response.complete) reject(new TransferError("the connection closed before the response body ended"));
    });
    response.once("error", (err) => reject(translate(err)));
  });
}
