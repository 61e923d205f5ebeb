import type { Agent as HttpAgent, IncomingMessage } from "node:http";
import { pipeline } from "node:stream/promises";
import { nodeHttp, nodeHttps } from "./node-http.js";

/** How long a response may send nothing before it fails as a network error (undici's is 300 s). */
export const API_IDLE_TIMEOUT_MS = 60_000;

/** An answer is read whole into memory, up to this much; more fails the call (an endless body). */
const MAX_ANSWER_BYTES = 64 << 20;

/** Marks the fetch functions apiFetch makes (see isApiFetch). */
const API_FETCH = Symbol("ckpt.apiFetch");

/**
 * The `fetch` every CLI command gives the SDK for its JSON API calls: node:http(s) instead of the
 * global fetch, whose first use loads and compiles undici (web streams, http2, zlib...), the
 * largest part of a `ckpt ls` start-up (BENCHMARKS.md, start-up), and which on Node 20 is an undici
 * that a connection closed under backpressure can crash (the transfer engine's reason to exist).
 * It does what those calls need: a method, headers, a body (a string, bytes, or a stream: an
 * upload through a throttle or a spy), an AbortSignal, same-origin redirects, and an idle
 * timeout (a stalled server fails the call, which the callers' retries then repeat); the
 * response offers status, ok, headers (get, has, entries), text(), json() and arrayBuffer().
 * Answers are read whole, up to MAX_ANSWER_BYTES: it is for API answers, not for files (those go
 * over the transfer layer).
 */
export function apiFetch(options: { idleTimeoutMs?: number } = {}): typeof fetch {
  const idleTimeoutMs = options.idleTimeoutMs ?? API_IDLE_TIMEOUT_MS;
  const agents = new Map<string, HttpAgent>();
  const send = async (url: URL, init: RequestInit, redirectsLeft: number): Promise<Response> => {
    const http = url.protocol === "https:" ? nodeHttps() : url.protocol === "http:" ? nodeHttp() : null;
    if (!http) throw new TypeError(`unsupported protocol ${url.protocol}`);
    let agent = agents.get(url.protocol);
    if (!agent) agents.set(url.protocol, (agent = new http.Agent({ keepAlive: true })));
    const { status, headers, body } = await new Promise<{ status: number; headers: IncomingMessage["headers"]; body: Buffer }>((resolve, reject) => {
      // Once a stall is declared, the request and the response both report the same cause.
      let stalled: Error | null = null;
      const fail = (err: Error) => reject(networkError(stalled ?? err));
      const req = http.request(url, { method: init.method ?? "GET", headers: plainHeaders(init.headers), agent, signal: init.signal ?? undefined }, (res) => {
        const chunks: Buffer[] = [];
        let received = 0;
        res.on("data", (chunk: Buffer) => {
          received += chunk.length;
          if (received > MAX_ANSWER_BYTES) res.destroy(new Error(`the answer is larger than ${MAX_ANSWER_BYTES >> 20} MiB`));
          else chunks.push(chunk);
        });
        res.on("end", () => {
          // An answer before the whole body was sent (a refusal) ends the exchange: the rest of
          // the body is not sent, and the socket goes rather than waiting for it.
          if (!req.writableFinished) req.destroy();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
        res.on("error", fail);
      });
      req.setTimeout(idleTimeoutMs, () => {
        stalled = Object.assign(new Error(`the server sent nothing for ${idleTimeoutMs / 1000} s`), { code: "ETIMEDOUT" });
        req.destroy(stalled);
      });
      req.on("error", fail);
      const body = init.body;
      if (body === undefined || body === null || typeof body === "string" || body instanceof Uint8Array) req.end(body ?? undefined);
      else if (isStreamedBody(body))
        // A failed read destroys the request, which rejects above; a server that answers before
        // reading the whole body (a refusal) fails the pipeline too, and the answer wins.
        pipeline(body, req).catch(() => {});
      else req.destroy(new TypeError("apiFetch sends a string, bytes or a stream as the body"));
    });
    const location = headers.location;
    // A streamed body was sent once and is gone: the 3xx is the answer then.
    const replayable = !isStreamedBody(init.body);
    if (status >= 300 && status < 400 && typeof location === "string" && redirectsLeft > 0 && replayable) {
      const next = new URL(location, url);
      // Like fetch, the credentials go to the same origin only: elsewhere the 3xx is the answer.
      if (next.origin === url.origin) return send(next, status === 303 ? { ...init, method: "GET", body: undefined } : init, redirectsLeft - 1);
    }
    return responseOf(status, headers, body);
  };
  const fetchImpl = (input: string | URL | Request, init: RequestInit = {}) => send(new URL(String(input)), init, 5);
  return Object.assign(fetchImpl, { [API_FETCH]: true }) as unknown as typeof fetch;
}

/**
 * Whether `fetchImpl` is one apiFetch made: a plain transport, not a fetch the SDK's user gave it to
 * see or shape every request (a proxy, a spy, a throttle), so the upload and download engines may
 * send their bodies over the transfer layer instead.
 */
export function isApiFetch(fetchImpl: typeof fetch): boolean {
  return (fetchImpl as unknown as Record<symbol, unknown>)[API_FETCH] === true;
}

function plainHeaders(headers: RequestInit["headers"]): Record<string, string> {
  if (!headers) return {};
  if (Array.isArray(headers)) return Object.fromEntries(headers);
  // A Headers object, told apart without touching the global `Headers` (that would load undici).
  if (typeof (headers as Headers).entries === "function") return Object.fromEntries((headers as Headers).entries());
  return { ...(headers as Record<string, string>) };
}

/** fetch's failure shape: a TypeError "fetch failed" whose cause is the socket error (ECONNREFUSED...). */
function networkError(cause: Error): Error {
  if (cause.name === "AbortError") return cause;
  return new TypeError("fetch failed", { cause });
}

function responseOf(status: number, headers: IncomingMessage["headers"], body: Buffer): Response {
  const text = (): string => body.toString("utf8");
  const entries = (): IterableIterator<[string, string]> =>
    Object.entries(headers)
      .flatMap(([name, value]): [string, string][] => (value === undefined ? [] : [[name, headerValue(value)!]]))
      [Symbol.iterator]();
  const response = {
    status,
    ok: status >= 200 && status < 300,
    headers: {
      get: (name: string) => headerValue(headers[name.toLowerCase()]),
      has: (name: string) => headers[name.toLowerCase()] !== undefined,
      entries,
      [Symbol.iterator]: entries,
    },
    text: async () => text(),
    json: async () => JSON.parse(text()) as unknown,
    arrayBuffer: async () => body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength),
  };
  return response as unknown as Response;
}

function headerValue(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(", ") : value;
}

/** Whether a fetch body is a stream (sent once, as it is read) rather than a string or bytes. */
export function isStreamedBody(value: unknown): value is AsyncIterable<Uint8Array> {
  return typeof (value as { [Symbol.asyncIterator]?: unknown } | null)?.[Symbol.asyncIterator] === "function";
}
