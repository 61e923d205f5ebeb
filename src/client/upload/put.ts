import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { CkptClient } from "../api.js";
import { backoffDelay, isRetryableStatus, parseRetryAfter } from "../download/retry.js";
import type { RetryPolicy } from "../download/types.js";
import { CkptApiError, apiErrorFrom } from "../errors.js";
import { createAgents, header, openRequest, readSmallBody } from "../transfer/http.js";

// Keep-alive pools for uploads; many sockets, because a push has many files and parts in flight.
const agents = createAgents();

/** A response to an upload request, its (small) body read. */
export interface PutResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * PUTs a body over the transfer layer (node:http): a file stream is piped straight into the
 * socket. fetch copies every chunk of a streamed body through web streams, which the upload
 * benchmark measured as most of `ckpt push`'s CPU. `onChunk` sees each chunk as it is sent (to
 * hash while sending). Every failure — refused, reset, the server closing mid-body, no byte
 * either way for the idle timeout — rejects with TransferError (or AbortError); the answer's
 * body is read up to 1 MiB.
 */
async function putBody(
  url: string,
  headers: Record<string, string>,
  body: Buffer | Readable,
  options: { signal?: AbortSignal; onChunk?: (chunk: Buffer) => void; idleTimeoutMs?: number } = {},
): Promise<PutResponse> {
  const { request, response: responded } = openRequest({ method: "PUT", url, headers, agents, signal: options.signal, idleTimeoutMs: options.idleTimeoutMs });
  if (Buffer.isBuffer(body)) {
    options.onChunk?.(body);
    request.end(body);
  } else {
    if (options.onChunk) body.on("data", options.onChunk);
    // A failed read destroys the request, which rejects `responded`; a server that answers
    // before reading the whole body (a refusal) makes this fail too, and the answer wins.
    pipeline(body, request).catch(() => {});
  }
  const response = await responded;
  const answer = await readSmallBody(response);
  // Answered before the whole body went (a refusal): stop sending it and let the socket go.
  if (!request.writableFinished) request.destroy();
  return { status: response.statusCode ?? 0, headers: response.headers, body: answer };
}

/**
 * PUTs an upload body: with node:http (putBody) when the client's fetch is a plain transport;
 * through `client.fetch` when it was given its own (a proxy, a test spy, a throttle), so that one
 * sees every request. Either way the answer comes back in one shape.
 */
async function sendPut(
  client: CkptClient,
  url: string,
  headers: Record<string, string>,
  body: Buffer | Readable,
  options: { signal?: AbortSignal; onChunk?: (chunk: Buffer) => void } = {},
): Promise<PutResponse> {
  if (client.plainTransport) return putBody(url, headers, body, options);
  if (options.onChunk) {
    if (Buffer.isBuffer(body)) options.onChunk(body);
    else body.on("data", options.onChunk);
  }
  const response = await client.fetch(url, {
    method: "PUT",
    headers,
    body: body as unknown as RequestInit["body"],
    // Required by fetch for a streamed request body.
    duplex: "half",
    signal: options.signal,
  } as RequestInit);
  return { status: response.status, headers: Object.fromEntries(response.headers) as IncomingHttpHeaders, body: Buffer.from(await response.arrayBuffer()) };
}

/**
 * The status and headers of a GET of `url`, its body not read (the connection is closed instead):
 * over node:http when the client's fetch is a plain transport, through `client.fetch` otherwise,
 * as sendPut does. Null when no answer came.
 */
export async function headOfGet(client: CkptClient, url: string, headers: Record<string, string>): Promise<{ status: number; header(name: string): string | null } | null> {
  if (client.plainTransport) {
    const { request, response } = openRequest({ method: "GET", url, headers, agents });
    request.end();
    const answer = await response.catch(() => null);
    if (!answer) return null;
    answer.destroy();
    return { status: answer.statusCode ?? 0, header: (name) => header(answer.headers, name) ?? null };
  }
  const answer = await client.fetch(url, { headers }).catch(() => null);
  if (!answer) return null;
  await answer.body?.cancel().catch(() => {});
  return { status: answer.status, header: (name) => answer.headers.get(name) };
}

/** One try of a PUT: a fresh body (a stream is good for one send) and what sees its chunks. */
export interface PutAttempt {
  body: Buffer | Readable;
  onChunk?: (chunk: Buffer) => void;
}

export interface PutRetryOptions {
  /** Tries, counting the first, and their backoff. */
  policy: RetryPolicy;
  signal?: AbortSignal;
  /** Called before each wait for another try. */
  onRetry?: (message: string, delayMs: number) => void;
}

/**
 * PUTs until the answer is a 2xx: network errors (a cut connection), 408, 429 (after its
 * Retry-After) and 5xx are tried again with backoff, each time with a fresh body from `attempt`;
 * any other answer, or the last failure, is thrown as a CkptApiError. An abort is thrown as is.
 * Every upload request (a whole file through the API server, one part of a direct upload)
 * is sent through here: the one retry rule of uploads.
 */
export async function putRetrying(
  client: CkptClient,
  url: string,
  headers: Record<string, string>,
  what: string,
  attempt: () => PutAttempt,
  options: PutRetryOptions,
): Promise<PutResponse> {
  for (let tries = 1; ; tries++) {
    let failure: CkptApiError;
    let retryAfterMs: number | undefined;
    try {
      const { body, onChunk } = attempt();
      const response = await sendPut(client, url, headers, body, { signal: options.signal, onChunk });
      if (response.status >= 200 && response.status <= 299) return response;
      failure = await putError(response, what);
      retryAfterMs = parseRetryAfter(header(response.headers, "retry-after"));
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      failure = err instanceof CkptApiError ? err : new CkptApiError(0, `${what}: ${(err as Error).message}`);
    }
    if (!isRetryableStatus(failure.status) || tries >= options.policy.attempts) throw failure;
    const delayMs = backoffDelay(tries, options.policy, retryAfterMs);
    options.onRetry?.(failure.message, delayMs);
    await sleep(delayMs, undefined, { signal: options.signal });
  }
}

/**
 * Sends an API request of the upload protocol (begin, complete) until it succeeds: a failure
 * with no answer, 408, 429 or 5xx is tried again with backoff, anything else is thrown.
 */
export async function requestRetrying<T>(send: () => Promise<T>, options: PutRetryOptions): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await send();
    } catch (err) {
      if (!(err instanceof CkptApiError) || !isRetryableStatus(err.status) || tries >= options.policy.attempts) throw err;
      const delayMs = backoffDelay(tries, options.policy);
      options.onRetry?.(err.message, delayMs);
      await sleep(delayMs, undefined, { signal: options.signal });
    }
  }
}

/** The CkptApiError for a failed upload response. */
async function putError(response: PutResponse, what: string): Promise<CkptApiError> {
  return apiErrorFrom(new Response(response.body.length ? response.body : null, { status: response.status }), what);
}
