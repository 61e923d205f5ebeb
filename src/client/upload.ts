import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import type { IncomingHttpHeaders } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { CkptClient } from "./api.js";
import { backoffDelay, isRetryableStatus, parseRetryAfter } from "./download/retry.js";
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from "./download/types.js";
import { CkptApiError, apiErrorFrom } from "./errors.js";
import { createAgents, openRequest, readSmallBody } from "./transfer/http.js";
import type { CheckpointFile } from "./types.js";

/** SHA-256 of a file, streamed (never the whole file in memory). */
export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Files up to this size are read whole into memory and hashed from there: one read, no stream. */
export const SMALL_FILE_BYTES = 4 << 20;

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
export async function putBody(
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
  return { status: response.statusCode ?? 0, headers: response.headers, body: answer };
}

/** The CkptApiError for a failed upload response. */
export async function putError(response: PutResponse, what: string): Promise<CkptApiError> {
  return apiErrorFrom(new Response(response.body.length ? response.body : null, { status: response.status }), what);
}

/**
 * PUTs an upload body: with node:http (putBody) when the client uses the global fetch; through
 * `client.fetch` when it was given its own (a proxy, a test spy, a throttle), so that one sees
 * every request. Either way the answer comes back in one shape.
 */
export async function sendPut(
  client: CkptClient,
  url: string,
  headers: Record<string, string>,
  body: Buffer | Readable,
  options: { signal?: AbortSignal; onChunk?: (chunk: Buffer) => void } = {},
): Promise<PutResponse> {
  if (client.fetch === globalThis.fetch) return putBody(url, headers, body, options);
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
 * ckpt extension: streams one local file to `PUT .../checkpoint_files/{rank}/{name}` with its
 * length and digest, so the server rejects a short or corrupted body and keeps nothing.
 * Without a `sha256`, a file up to SMALL_FILE_BYTES is read once into memory and hashed from
 * there; a larger one is hashed first (the digest has to lead the body). A failed PUT is sent
 * again whole (the server kept nothing of it).
 */
export async function uploadCheckpointFile(
  client: CkptClient,
  args: {
    projectId: string;
    jobId: string;
    nodeRank: number;
    relativeName: string;
    path: string;
    sha256?: string;
    signal?: AbortSignal;
    /** Network errors, 5xx and 429 (after its Retry-After) are retried; default DEFAULT_RETRY_POLICY. */
    retry?: Partial<RetryPolicy>;
  },
): Promise<CheckpointFile> {
  const { size } = await stat(args.path);
  let whole: Buffer | null = null;
  let sha256 = args.sha256;
  if (sha256 === undefined && size <= SMALL_FILE_BYTES) {
    whole = await readFile(args.path);
    // The file changed between stat and read; the server refuses a length mismatch anyway, but say why.
    if (whole.length !== size) throw new CkptApiError(0, `${args.relativeName} changed while it was being read`);
    sha256 = createHash("sha256").update(whole).digest("hex");
  }
  sha256 ??= await sha256OfFile(args.path);
  const name = args.relativeName.split("/").map(encodeURIComponent).join("/");
  const path = `/v1/training_projects/${encodeURIComponent(args.projectId)}/jobs/${encodeURIComponent(args.jobId)}/checkpoint_files/${args.nodeRank}/${name}`;
  const headers = {
    authorization: `Api-Key ${client.apiKey}`,
    "content-type": "application/octet-stream",
    "content-length": String(size),
    "x-ckpt-sha256": sha256,
  };
  const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...args.retry };
  for (let attempt = 1; ; attempt++) {
    let failure: CkptApiError;
    let retryAfterMs: number | undefined;
    try {
      const body = whole ?? createReadStream(args.path, { highWaterMark: 1 << 20 });
      const response = await sendPut(client, client.apiUrl + path, headers, body, { signal: args.signal });
      if (response.status >= 200 && response.status <= 299) return JSON.parse(response.body.toString("utf8")) as CheckpointFile;
      failure = await putError(response, `upload ${args.relativeName}`);
      retryAfterMs = parseRetryAfter(headerOf(response, "retry-after"));
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      failure = err instanceof CkptApiError ? err : new CkptApiError(0, `PUT ${args.relativeName}: ${(err as Error).message}`);
    }
    if (!isRetryableStatus(failure.status) || attempt >= policy.attempts) throw failure;
    await sleep(backoffDelay(attempt, policy, retryAfterMs), undefined, { signal: args.signal });
  }
}

export function headerOf(response: PutResponse, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
