import type { Agent as HttpAgent, IncomingMessage } from "node:http";
import { nodeHttp, nodeHttps } from "../client/transfer/node-http.js";

/** How long a response may send nothing before it fails as a network error (undici's is 300 s). */
export const API_IDLE_TIMEOUT_MS = 60_000;

/**
 * The `fetch` the CLI's short commands (listings, inspect, alias, retention) and `ckpt download`
 * give the SDK for their JSON API calls: node:http(s) instead of the global fetch, whose first use
 * loads and compiles undici (web streams, http2, zlib...), the largest part of a `ckpt ls`
 * start-up (BENCHMARKS.md, start-up). It does what those calls need: a method, headers, a small
 * body, an AbortSignal, same-origin redirects, and an idle timeout (a stalled server fails the
 * call, which download's retries then repeat); the response offers status, ok, headers.get,
 * text() and json(). The upload engines keep the global fetch.
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
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", fail);
      });
      req.setTimeout(idleTimeoutMs, () => {
        stalled = Object.assign(new Error(`the server sent nothing for ${idleTimeoutMs / 1000} s`), { code: "ETIMEDOUT" });
        req.destroy(stalled);
      });
      req.on("error", fail);
      req.end(typeof init.body === "string" ? init.body : undefined);
    });
    const location = headers.location;
    if (status >= 300 && status < 400 && typeof location === "string" && redirectsLeft > 0) {
      const next = new URL(location, url);
      // Like fetch, the credentials go to the same origin only: elsewhere the 3xx is the answer.
      if (next.origin === url.origin) return send(next, status === 303 ? { ...init, method: "GET", body: undefined } : init, redirectsLeft - 1);
    }
    return responseOf(status, headers, body);
  };
  return ((input: string | URL | Request, init: RequestInit = {}) => send(new URL(String(input)), init, 5)) as typeof fetch;
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
  const response = {
    status,
    ok: status >= 200 && status < 300,
    headers: { get: (name: string) => headerValue(headers[name.toLowerCase()]) },
    text: async () => text(),
    json: async () => JSON.parse(text()) as unknown,
  };
  return response as unknown as Response;
}

function headerValue(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(", ") : value;
}
