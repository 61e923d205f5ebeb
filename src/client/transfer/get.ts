import { write as fsWrite } from "node:fs";
import { connect as netConnect, isIP, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { MAX_HEADER_BYTES, TransferError, translate } from "./http.js";

/**
 * The download side's GET: a small, strict HTTP/1.1 client over plain sockets, chosen by
 * measurement (BENCHMARKS.md, "transfer engine"). node:http hands every socket read to its
 * parser as a fresh 64 KiB buffer and every body chunk to a stream; at loopback speed that
 * allocation, the garbage it leaves and the stream machinery were most of the client's CPU. Here
 * each plain-TCP connection reads into one reused buffer (net's `onread`), up to 1 MiB per
 * read, and a body's bytes are written from that buffer straight to the file at their offset:
 * no copy, no allocation per read. Reading stops while that write runs (the buffer is in use),
 * so backpressure is the socket not being read, and a FIN that arrives meanwhile is seen after
 * the write, in order, like any other byte. TLS connections take the same path through their
 * 'data' chunks.
 *
 * What it speaks: GET, one request at a time per connection (no pipelining), keep-alive,
 * Content-Length, chunked and close-delimited bodies, interim 1xx answers. What it refuses as a
 * malformed response: anything else (bad status line, header names or values with control
 * characters, folded headers, conflicting or non-numeric Content-Length, an unknown
 * Transfer-Encoding, both framings at once, more than MAX_HEADER_BYTES of headers). Every
 * failure surfaces as a TransferError (or the signal's AbortError) on the exchange's promise.
 */

/** What to do with a response's body, decided from its status and headers. */
export type BodyPlan =
  /** Write it at `position` onwards of the open file `fd`; more than `length` bytes is an error. */
  | { kind: "file"; fd: number; position: number; length: number; onWritten(bytes: number): void }
  /** Read it into memory, at most `limit` bytes (an error body); a longer one is dropped (text null). */
  | { kind: "text"; limit: number }
  /** Not wanted: the connection is closed instead of read to the end. */
  | { kind: "ignore" };

export interface ResponseHead {
  status: number;
  /** Lower-cased names; a repeated header keeps its first value. */
  headers: Map<string, string>;
}

export interface GetOptions {
  url: string;
  /** Extra request headers (lower-case names); never Host or framing headers. */
  headers: Record<string, string>;
  pool: ConnectionPool;
  signal?: AbortSignal;
  /** No byte from the server for this long (while we are not busy writing) fails the exchange. */
  idleTimeoutMs: number;
  /** Sees the head before any body byte is used; throwing refuses the body (the error is the exchange's). */
  onHead(head: ResponseHead): BodyPlan;
}

export interface GetResult extends ResponseHead {
  /** The body, for a `text` plan (null when it exceeded the limit). */
  text: Buffer | null;
  /** Bytes of the body written, for a `file` plan. */
  written: number;
}

/** Bytes per socket read on plain TCP, and per connection held while it lives. */
const READ_BUFFER_BYTES = 1 << 20;
/** Idle keep-alive connections are closed after this long (servers close theirs around 5-60 s). */
const KEEP_ALIVE_MS = 4_000;

/**
 * Keep-alive connections by origin, most recently used first. Idle ones hold no reference on
 * the event loop and close after KEEP_ALIVE_MS, or at once when the server closes or speaks.
 */
export class ConnectionPool {
  private readonly idle = new Map<string, Connection[]>();
  private closed = false;

  /** @internal */
  take(origin: string): Connection | undefined {
    const list = this.idle.get(origin);
    const conn = list?.pop();
    if (conn) conn.leaveIdle();
    return conn;
  }

  /** @internal */
  give(conn: Connection): void {
    if (this.closed) return conn.destroy();
    let list = this.idle.get(conn.origin);
    if (!list) this.idle.set(conn.origin, (list = []));
    list.push(conn);
    conn.enterIdle(() => {
      const at = list.indexOf(conn);
      if (at !== -1) list.splice(at, 1);
    });
  }

  /** @internal */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Closes every idle connection; connections in use close when their exchange ends. */
  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const conn of list.splice(0)) conn.destroy();
  }
}

type Feed = (buffer: Buffer, start: number, end: number) => boolean;

/** One socket, and where its bytes go right now. @internal */
class Connection {
  readonly socket: Socket;
  /** The exchange reading this connection; bytes or events with none mean the connection is spoiled. */
  feed: Feed | null = null;
  onEnd: (() => void) | null = null;
  onError: ((err: Error) => void) | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private onIdleGone: (() => void) | null = null;
  /** Whether any exchange has completed on it (a failure before the first byte may be a stale keep-alive). */
  used = false;
  dead = false;

  constructor(
    readonly origin: string,
    target: URL,
  ) {
    const port = Number(target.port || (target.protocol === "https:" ? 443 : 80));
    const host = target.hostname.startsWith("[") ? target.hostname.slice(1, -1) : target.hostname;
    if (target.protocol === "https:") {
      this.socket = tlsConnect({ host, port, servername: isIP(host) ? undefined : host, ALPNProtocols: ["http/1.1"] });
      this.socket.on("data", (chunk: Buffer) => {
        if (!this.deliver(chunk, 0, chunk.length)) this.socket.pause();
      });
    } else {
      this.socket = netConnect({
        host,
        port,
        onread: { buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES), callback: (n: number, buf: Uint8Array) => this.deliver(buf as Buffer, 0, n) },
      });
    }
    this.socket.setNoDelay(true);
    this.socket.on("end", () => {
      this.dead = true;
      if (this.onEnd) this.onEnd();
      else this.destroy();
    });
    this.socket.on("error", (err) => {
      this.dead = true;
      if (this.onError) this.onError(err);
      else this.destroy();
    });
    this.socket.on("close", () => {
      this.dead = true;
      this.onIdleGone?.();
      this.clearIdle();
      // A close without 'end' or 'error' (destroyed under us): the exchange sees it as a cut.
      this.onError?.(new TransferError("the connection closed", "ECONNRESET"));
    });
  }

  /** Returns false to stop reading until resume(). */
  private deliver(buf: Buffer, start: number, end: number): boolean {
    if (this.feed) return this.feed(buf, start, end);
    // Bytes nobody asked for (after a body, or on an idle connection): it cannot be trusted again.
    this.destroy();
    return false;
  }

  write(data: string): void {
    this.socket.write(data, "latin1");
  }

  resume(): void {
    if (!this.dead) this.socket.resume();
  }

  enterIdle(onGone: () => void): void {
    this.feed = null;
    this.onEnd = null;
    this.onError = null;
    this.onIdleGone = onGone;
    this.socket.setTimeout(0);
    this.socket.unref();
    this.idleTimer = setTimeout(() => this.destroy(), KEEP_ALIVE_MS);
    this.idleTimer.unref();
  }

  leaveIdle(): void {
    this.clearIdle();
    this.onIdleGone = null;
    this.socket.ref();
  }

  private clearIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  destroy(): void {
    this.dead = true;
    this.clearIdle();
    this.socket.destroy();
  }
}

const CRLF = "\r\n";
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9][0-9]{2})(?: [\t\x20-\x7e\x80-\xff]*)?$/;
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*([\t\x20-\x7e\x80-\xff]*?)[\t ]*$/;

/**
 * One GET. Resolves when the body is done (written, read or ignored); rejects with a
 * TransferError, the signal's reason, or what onHead threw. For a `file` plan the rejection
 * comes only after every write it started has finished (the caller may close the file then),
 * and `onWritten` has counted every byte written, so a retry can continue from there.
 */
export async function get(options: GetOptions): Promise<GetResult> {
  let target: URL;
  try {
    target = new URL(options.url);
  } catch {
    throw new TransferError("an invalid URL");
  }
  if (target.protocol !== "http:" && target.protocol !== "https:") throw new TransferError(`unsupported URL scheme ${target.protocol}`);
  if (options.pool.isClosed) throw new TransferError("the connection pool is closed");
  options.signal?.throwIfAborted();
  const origin = `${target.protocol}//${target.host}`;
  const reused = options.pool.take(origin);
  if (reused) {
    try {
      return await exchange(reused, target, options, true);
    } catch (err) {
      // A kept-alive connection the server had already closed: nothing was answered, try a new one.
      if (!(err instanceof StaleConnection)) throw err;
    }
  }
  return exchange(new Connection(origin, target), target, options, false);
}

class StaleConnection extends Error {}

function exchange(conn: Connection, target: URL, options: GetOptions, reused: boolean): Promise<GetResult> {
  return new Promise<GetResult>((resolve, reject) => {
    let headText = "";
    let head: ResponseHead | null = null;
    let plan: BodyPlan | null = null;
    let keepAlive = true;
    /** Body framing once the head is parsed. */
    let framing: "length" | "chunked" | "close" | "none" = "none";
    let remaining = 0; // Content-Length bytes still to come
    const chunked = new ChunkedDecoder();
    let received = 0; // body bytes seen
    let written = 0;
    let writing = false;
    const textChunks: Buffer[] = [];
    let textOverflow = false;
    let anyByte = false;
    let finished = false;
    let outcome: { ok: true } | { ok: false; error: unknown } | null = null;

    const idleMs = options.idleTimeoutMs;
    const onTimeout = (): void => {
      // Our own write being slow is not the server going quiet.
      if (writing) return void conn.socket.setTimeout(idleMs);
      fail(new TransferError(`no data for ${Math.round(idleMs / 1000)} s`, "ETIMEDOUT"));
    };
    const onAbort = (): void => fail(options.signal!.reason ?? abortError());

    const cleanup = (): void => {
      conn.socket.off("timeout", onTimeout);
      options.signal?.removeEventListener("abort", onAbort);
      conn.feed = null;
      conn.onEnd = null;
      conn.onError = null;
    };
    /** Settles once no write is in flight. */
    const settle = (): void => {
      if (finished || writing || outcome === null) return;
      finished = true;
      cleanup();
      if (!outcome.ok) {
        conn.destroy();
        reject(outcome.error);
        return;
      }
      conn.used = true;
      conn.socket.setTimeout(0);
      if (keepAlive && !conn.dead) options.pool.give(conn);
      else conn.destroy();
      const text = plan?.kind === "text" && !textOverflow ? Buffer.concat(textChunks) : null;
      resolve({ status: head!.status, headers: head!.headers, text, written });
    };
    const fail = (error: unknown): void => {
      if (outcome !== null) return;
      outcome = { ok: false, error };
      conn.destroy();
      settle();
    };
    const succeed = (): void => {
      if (outcome !== null) return;
      outcome = { ok: true };
      settle();
    };

    /** Body bytes [start, end) of `buf`: returns false when reading must wait (a write holds the buffer). */
    const body = (buf: Buffer, start: number, end: number): boolean => {
      const n = end - start;
      if (n === 0) return true;
      received += n;
      if (plan!.kind === "file") {
        const p = plan!;
        if (received > p.length) {
          fail(new TransferError("the server sent more bytes than requested"));
          return false;
        }
        writing = true;
        writeFully(p.fd, buf, start, n, p.position + written, (err) => {
          writing = false;
          if (err) {
            fail(err);
            return;
          }
          written += n;
          p.onWritten(n);
          if (outcome !== null) return settle();
          if (bodyDone()) return succeed();
          conn.resume();
        });
        return false;
      }
      if (plan!.kind === "text") {
        if (received > plan!.limit) {
          // Too long to be an error message worth reading (or endless): stop here.
          textOverflow = true;
          keepAlive = false;
          succeed();
          return false;
        }
        textChunks.push(Buffer.from(buf.subarray(start, end)));
      }
      return true;
    };
    const bodyDone = (): boolean => (framing === "length" && remaining === 0) || (framing === "chunked" && chunked.done);

    conn.feed = (buf, start, end) => {
      if (outcome !== null) return false;
      anyByte = true;
      let at = start;
      try {
        while (head === null) {
          // Headers are copied out (the buffer is reused), at most the limit's worth; the search
          // starts where a CRLFCRLF split over two reads could.
          const before = headText.length;
          headText += buf.toString("latin1", at, Math.min(end, at + MAX_HEADER_BYTES + 4 - before));
          const cut = headText.indexOf(CRLF + CRLF, Math.max(0, before - 3));
          if (cut === -1 || cut > MAX_HEADER_BYTES) {
            if (cut === -1 && headText.length < MAX_HEADER_BYTES + 4) return true;
            throw new TransferError(`the response headers exceed ${MAX_HEADER_BYTES >> 10} KiB`, "HPE_HEADER_OVERFLOW");
          }
          at += cut + 4 - before;
          const parsed = parseHead(headText.slice(0, cut));
          headText = "";
          if (parsed.status < 200) continue; // an interim answer (100 Continue, 103 Early Hints)
          head = { status: parsed.status, headers: parsed.headers };
          keepAlive = parsed.keepAlive;
          framing = parsed.framing;
          remaining = parsed.contentLength;
          plan = options.onHead(head);
          if (plan.kind === "ignore" || (plan.kind === "file" && framing === "length" && remaining > plan.length)) {
            if (plan.kind === "file") throw new TransferError("the server sent more bytes than requested");
            keepAlive = false;
            succeed();
            return false;
          }
          if (bodyDone() || framing === "none") {
            if (at < end) keepAlive = false; // bytes after a complete answer
            succeed();
            return false;
          }
        }
        if (framing === "length") {
          const take = Math.min(remaining, end - at);
          remaining -= take;
          if (at + take < end) keepAlive = false; // bytes beyond the body: never written, never reused
          const more = body(buf, at, at + take);
          if (!writing && bodyDone()) succeed();
          return more && outcome === null;
        }
        if (framing === "close") return body(buf, at, end);
        // Chunked: data segments of this read, gathered (rare on downloads: S3 and nginx send lengths).
        const segments: Buffer[] = [];
        const stop = chunked.feed(buf, at, end, (s, e) => void segments.push(Buffer.from(buf.subarray(s, e))));
        if (stop < end) keepAlive = false;
        const data = segments.length === 1 ? segments[0]! : Buffer.concat(segments);
        const more = body(data, 0, data.length);
        if (!writing && bodyDone()) succeed();
        return more && outcome === null;
      } catch (err) {
        // A TransferError from parsing, or whatever onHead threw: the exchange's error as it is.
        fail(err);
        return false;
      }
    };
    conn.onEnd = () => {
      if (outcome !== null) return;
      if (head !== null && framing === "close") {
        keepAlive = false;
        if (plan!.kind !== "file" || received === plan!.length) return void (writing ? (outcome = { ok: true }) : succeed());
      }
      if (reused && !anyByte) return fail(new StaleConnection());
      fail(new TransferError(head === null ? "the connection closed before the response headers" : `the connection closed after ${received} body bytes`, "ECONNRESET"));
    };
    conn.onError = (err) => {
      if (outcome !== null) return;
      if (reused && !anyByte) return fail(new StaleConnection());
      fail(translate(err));
    };
    conn.socket.setTimeout(idleMs);
    conn.socket.on("timeout", onTimeout);
    if (options.signal) {
      if (options.signal.aborted) return onAbort();
      options.signal.addEventListener("abort", onAbort, { once: true });
    }
    let request = `GET ${target.pathname}${target.search} HTTP/1.1${CRLF}host: ${target.host}${CRLF}`;
    for (const [name, value] of Object.entries(options.headers)) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) return fail(new TransferError(`an invalid request header ${JSON.stringify(name)}`));
      request += `${name}: ${value}${CRLF}`;
    }
    conn.write(request + CRLF);
    conn.resume();
  });
}

function parseHead(text: string): { status: number; headers: Map<string, string>; keepAlive: boolean; framing: "length" | "chunked" | "close" | "none"; contentLength: number } {
  const lines = text.split(CRLF);
  const status = STATUS_LINE.exec(lines[0]!);
  if (!status) throw malformed("HPE_INVALID_STATUS");
  const code = Number(status[2]);
  const headers = new Map<string, string>();
  const lengths = new Set<string>();
  let chunked = false;
  let connection = "";
  for (let i = 1; i < lines.length; i++) {
    const m = HEADER_LINE.exec(lines[i]!);
    if (!m) throw malformed("HPE_INVALID_HEADER_TOKEN");
    const name = m[1]!.toLowerCase();
    const value = m[2]!;
    if (name === "content-length") for (const v of value.split(",")) lengths.add(v.trim());
    else if (name === "transfer-encoding") {
      if (value.trim().toLowerCase() !== "chunked" || chunked) throw malformed("HPE_INVALID_TRANSFER_ENCODING");
      chunked = true;
    } else if (name === "connection") connection += `,${value.toLowerCase()}`;
    if (!headers.has(name)) headers.set(name, value);
  }
  if (lengths.size > 1 || [...lengths].some((v) => !/^[0-9]{1,15}$/.test(v))) throw malformed("HPE_INVALID_CONTENT_LENGTH");
  if (chunked && lengths.size) throw malformed("HPE_UNEXPECTED_CONTENT_LENGTH");
  if (code === 101) throw malformed("HPE_UNEXPECTED_UPGRADE");
  const tokens = connection.split(",").map((t) => t.trim());
  const keepAlive = status[1] === "1" ? !tokens.includes("close") : tokens.includes("keep-alive");
  const contentLength = lengths.size ? Number([...lengths][0]) : 0;
  const noBody = code < 200 || code === 204 || code === 304;
  const framing = noBody ? "none" : chunked ? "chunked" : lengths.size ? (contentLength === 0 ? "none" : "length") : "close";
  return { status: code, headers, keepAlive: keepAlive && framing !== "close", framing, contentLength };
}

function malformed(code: string): TransferError {
  return new TransferError(`the server sent a malformed response (${code})`, code);
}

/**
 * Strict chunked transfer coding: hex sizes (extensions skipped), CRLF after each chunk, the
 * last chunk and trailers up to MAX_HEADER_BYTES. `feed` passes each data segment to `data`
 * and returns where the coding ended (end of input if it has not).
 */
class ChunkedDecoder {
  private state: "size" | "ext" | "size-lf" | "data" | "data-cr" | "data-lf" | "trailer" | "trailer-lf" | "done" = "size";
  private size = 0;
  private digits = 0;
  private left = 0;
  private trailerLine = 0;
  private trailerBytes = 0;

  get done(): boolean {
    return this.state === "done";
  }

  feed(buf: Buffer, start: number, end: number, data: (start: number, end: number) => void): number {
    let i = start;
    while (i < end && this.state !== "done") {
      const c = buf[i]!;
      switch (this.state) {
        case "size": {
          const v = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
          if (v >= 0) {
            if (++this.digits > 12) throw malformed("HPE_INVALID_CHUNK_SIZE");
            this.size = this.size * 16 + v;
          } else if (this.digits > 0 && (c === 0x3b || c === 0x20 || c === 0x09)) this.state = "ext";
          else if (this.digits > 0 && c === 0x0d) this.state = "size-lf";
          else throw malformed("HPE_INVALID_CHUNK_SIZE");
          i++;
          break;
        }
        case "ext":
          if (c === 0x0d) this.state = "size-lf";
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) throw malformed("HPE_INVALID_CHUNK_SIZE");
          i++;
          break;
        case "size-lf":
          if (c !== 0x0a) throw malformed("HPE_INVALID_CHUNK_SIZE");
          i++;
          this.left = this.size;
          this.digits = 0;
          this.size = 0;
          this.state = this.left === 0 ? "trailer" : "data";
          break;
        case "data": {
          const take = Math.min(this.left, end - i);
          data(i, i + take);
          i += take;
          this.left -= take;
          if (this.left === 0) this.state = "data-cr";
          break;
        }
        case "data-cr":
          if (c !== 0x0d) throw malformed("HPE_STRICT");
          this.state = "data-lf";
          i++;
          break;
        case "data-lf":
          if (c !== 0x0a) throw malformed("HPE_STRICT");
          this.state = "size";
          i++;
          break;
        case "trailer":
          if (++this.trailerBytes > MAX_HEADER_BYTES) throw new TransferError(`the response headers exceed ${MAX_HEADER_BYTES >> 10} KiB`, "HPE_HEADER_OVERFLOW");
          if (c === 0x0d) this.state = "trailer-lf";
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) throw malformed("HPE_INVALID_HEADER_TOKEN");
          else this.trailerLine++;
          i++;
          break;
        case "trailer-lf":
          if (c !== 0x0a) throw malformed("HPE_STRICT");
          i++;
          this.state = this.trailerLine === 0 ? "done" : "trailer";
          this.trailerLine = 0;
          break;
      }
    }
    return i;
  }
}

/** Positional write of buf[start, start+length), continuing after short writes. */
function writeFully(fd: number, buf: Buffer, start: number, length: number, position: number, done: (err: Error | null) => void): void {
  fsWrite(fd, buf, start, length, position, (err, n) => {
    if (err) return done(err);
    if (n === length) return done(null);
    if (n <= 0) return done(new Error("the disk accepted no bytes"));
    writeFully(fd, buf, start + n, length - n, position + n, done);
  });
}

function abortError(): Error {
  const err = new Error("the operation was aborted");
  err.name = "AbortError";
  return err;
}
