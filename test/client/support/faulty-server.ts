import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

/**
 * A checkpoint API and presigned-URL host on raw TCP sockets, so a test can make it misbehave
 * the way real networks and servers do — at the byte level, below what any HTTP library would let
 * a server do: FIN or RST in the middle of a body, a body that stalls, bodies shorter or longer
 * than their Content-Length, malformed or enormous headers, an endless body. Nothing is mocked:
 * the client under test talks real HTTP/1.1 over real sockets to this server.
 *
 * The listing (`GET /v1/training_projects/<p>/jobs/<j>/checkpoint_files`) asks `listing` what to
 * do (answered correctly by default); every blob request (`GET /blob/<index>`) asks `behaviour`.
 */
export interface FaultyFile {
  name: string;
  content: Buffer;
  rank?: number;
  /** Announced as x-ckpt-sha256 when given. */
  sha256?: string;
}

export interface BlobRequest {
  file: FaultyFile;
  index: number;
  /** 1-based count of requests for this file so far. */
  nth: number;
  start: number;
  end: number;
  /** Whether the request carried a Range header. */
  ranged: boolean;
  /** Which listing the URL came from (0 = the first; bumped by every listing request). */
  urlGeneration: number;
}

export type Behaviour =
  | { kind: "ok" }
  /** Send the headers (with Connection: close) and this many body bytes, then FIN (socket.end()). */
  | { kind: "fin-after"; bytes: number }
  /** Send this many body bytes, then RST. */
  | { kind: "rst-after"; bytes: number }
  /** Send this many body bytes, then nothing, with the connection held open. */
  | { kind: "stall-after"; bytes: number }
  /** Announce the right Content-Length, send `extra` bytes more than it (keep-alive). */
  | { kind: "long"; extra: number }
  /** Answer 200 with the whole file, whatever range was asked for. */
  | { kind: "ignore-range" }
  /** Answer 206 with the requested length, but a Content-Range (and bytes) shifted by `shift`. */
  | { kind: "wrong-range"; shift: number }
  | { kind: "redirect"; status: 301 | 302 | 307 | 308; location: string }
  | { kind: "status"; status: number; body?: string; headers?: Record<string, string> }
  /** A header block no HTTP parser accepts. */
  | { kind: "malformed-headers" }
  /** A header of this many bytes. */
  | { kind: "huge-headers"; bytes: number }
  /** 200, chunked, chunks forever (until the client goes away). */
  | { kind: "endless" };

/** For the nth listing request (1-based): answer it, or send half its body and then nothing, the connection held open. */
export type ListingBehaviour = "ok" | "stall-mid-body";

export interface FaultyServer {
  url: string;
  host: string;
  /** Blob requests seen, in order. */
  requests: BlobRequest[];
  listings(): number;
  setBehaviour(fn: (request: BlobRequest) => Behaviour): void;
  setListing(fn: (nth: number) => ListingBehaviour): void;
  close(): Promise<void>;
}

const CRLF = "\r\n";

export async function startFaultyServer(options: {
  projectId: string;
  jobId: string;
  files: FaultyFile[];
  behaviour?: (request: BlobRequest) => Behaviour;
  host?: string;
  /** Where listed URLs point (default: this server); e.g. a proxy or a second host. */
  urlBase?: () => string;
}): Promise<FaultyServer> {
  let behaviour = options.behaviour ?? ((): Behaviour => ({ kind: "ok" }));
  let listing = (_nth: number): ListingBehaviour => "ok";
  const requests: BlobRequest[] = [];
  const counts = new Map<number, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let listings = 0;
  const host = options.host ?? "127.0.0.1";
  const listPath = `/v1/training_projects/${options.projectId}/jobs/${options.jobId}/checkpoint_files`;
  let selfUrl = "";
  const created = "2025-01-01T00:00:00Z";
  const project = { id: options.projectId, name: options.projectId, created_at: created, updated_at: created };
  const job = { id: options.jobId, training_project_id: options.projectId, created_at: created, updated_at: created };

  const respond = (socket: Socket, status: number, headers: Record<string, string | number>, body: Buffer | string = ""): void => {
    const payload = typeof body === "string" ? Buffer.from(body) : body;
    const lines = [`HTTP/1.1 ${status} X`, ...Object.entries({ "content-length": payload.length, ...headers }).map(([k, v]) => `${k}: ${v}`)];
    socket.write(lines.join(CRLF) + CRLF + CRLF);
    socket.write(payload);
  };

  const serveBlob = (socket: Socket, index: number, rangeHeader: string | undefined, generation: number): boolean => {
    const file = options.files[index];
    if (!file) {
      respond(socket, 404, { "content-type": "application/json" }, JSON.stringify({ message: "no such blob" }));
      return true;
    }
    const nth = (counts.get(index) ?? 0) + 1;
    counts.set(index, nth);
    const m = /^bytes=([0-9]+)-([0-9]+)$/.exec(rangeHeader ?? "");
    const size = file.content.length;
    const start = m ? Number(m[1]) : 0;
    const end = m ? Math.min(Number(m[2]), size - 1) : size - 1;
    const request: BlobRequest = { file, index, nth, start, end, ranged: m !== null, urlGeneration: generation };
    requests.push(request);
    const b = behaviour(request);
    const etag = `"v-${index}"`;
    const validators: Record<string, string> = { etag };
    if (file.sha256) validators["x-ckpt-sha256"] = file.sha256;
    const rangeHeaders = (s: number, e: number): Record<string, string | number> =>
      m ? { "content-range": `bytes ${s}-${e}/${size}`, "content-length": e - s + 1 } : { "content-length": size };
    const status = m ? 206 : 200;
    const head = (headers: Record<string, string | number>, code = status): void => {
      socket.write([`HTTP/1.1 ${code} X`, ...Object.entries({ ...validators, ...headers }).map(([k, v]) => `${k}: ${v}`)].join(CRLF) + CRLF + CRLF);
    };
    const body = file.content.subarray(start, end + 1);
    switch (b.kind) {
      case "ok":
        head(rangeHeaders(start, end));
        socket.write(body);
        return true;
      case "fin-after":
        // As a proxy or S3 does when it closes a connection: it says so, then sends FIN.
        head({ ...rangeHeaders(start, end), connection: "close" });
        {
          // The last 64 KiB come in one burst with the FIN, after a pause: several socket reads'
          // worth arriving at once is what leaves a reader paused when the FIN is seen.
          const tail = Math.max(0, b.bytes - (64 << 10));
          if (tail === 0) {
            socket.end(body.subarray(0, b.bytes));
            return false;
          }
          socket.write(body.subarray(0, tail));
          const timer = setTimeout(() => {
            timers.delete(timer);
            socket.end(body.subarray(tail, b.bytes));
          }, 30);
          timers.add(timer);
        }
        return false;
      case "rst-after":
        head(rangeHeaders(start, end));
        socket.write(body.subarray(0, b.bytes), () => socket.resetAndDestroy());
        return false;
      case "stall-after":
        head(rangeHeaders(start, end));
        socket.write(body.subarray(0, b.bytes));
        return false;
      case "long":
        head(rangeHeaders(start, end));
        socket.write(Buffer.concat([body, Buffer.alloc(b.extra, 0x41)]));
        return true;
      case "ignore-range":
        head({ "content-length": size }, 200);
        socket.write(file.content);
        return true;
      case "wrong-range": {
        const s = Math.min(start + b.shift, size - 1 - (end - start));
        head({ "content-range": `bytes ${s}-${s + end - start}/${size}`, "content-length": end - start + 1 });
        socket.write(file.content.subarray(s, s + end - start + 1));
        return true;
      }
      case "redirect":
        respond(socket, b.status, { location: b.location });
        return true;
      case "status":
        respond(socket, b.status, { "content-type": "application/xml", ...b.headers }, b.body ?? "");
        return true;
      case "malformed-headers":
        socket.write(`HTTP/1.1 200 OK${CRLF}content-length: twelve${CRLF}\x00bad header\x01${CRLF}${CRLF}garbage`);
        return true;
      case "huge-headers":
        head({ "x-padding": "a".repeat(b.bytes), ...rangeHeaders(start, end) });
        socket.write(body);
        return true;
      case "endless": {
        head({ "transfer-encoding": "chunked" }, 200);
        const chunk = Buffer.concat([Buffer.from(`10000${CRLF}`), Buffer.alloc(0x10000, 0x42), Buffer.from(CRLF)]);
        const pump = (): void => {
          while (!socket.destroyed && socket.write(chunk));
          if (!socket.destroyed) socket.once("drain", pump);
        };
        pump();
        return false;
      }
    }
  };

  const serveListing = (socket: Socket): void => {
    const generation = listings++;
    const base = options.urlBase?.() ?? selfUrl;
    const body = JSON.stringify({
      presigned_urls: options.files.map((f, i) => ({
        url: `${base}/blob/${i}?gen=${generation}&sig=secret`,
        relative_file_name: f.name,
        node_rank: f.rank ?? 0,
        size_bytes: f.content.length,
        last_modified: "2025-01-01T00:00:00Z",
      })),
      next_page_token: null,
      total_count: options.files.length,
    });
    if (listing(listings) === "stall-mid-body") {
      const payload = Buffer.from(body);
      socket.write(`HTTP/1.1 200 X${CRLF}content-type: application/json${CRLF}content-length: ${payload.length}${CRLF}${CRLF}`);
      socket.write(payload.subarray(0, payload.length >> 1));
      return;
    }
    respond(socket, 200, { "content-type": "application/json" }, body);
  };

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffered = "";
    let open = true;
    socket.on("data", (data) => {
      if (!open) return;
      buffered += data.toString("latin1");
      for (let end = buffered.indexOf(CRLF + CRLF); end !== -1 && open; end = buffered.indexOf(CRLF + CRLF)) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        const [requestLine, ...headerLines] = head.split(CRLF);
        const target = requestLine!.split(" ")[1] ?? "/";
        const headers = new Map(headerLines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
        const url = new URL(target, "http://x");
        const blob = /^\/blob\/([0-9]+)$/.exec(url.pathname);
        if (url.pathname === listPath) serveListing(socket);
        else if (url.pathname === "/v1/training_projects")
          respond(socket, 200, { "content-type": "application/json" }, JSON.stringify({ training_projects: [project] }));
        else if (url.pathname === `/v1/training_projects/${options.projectId}/jobs/${options.jobId}`)
          respond(socket, 200, { "content-type": "application/json" }, JSON.stringify({ training_job: job }));
        else if (blob) open = serveBlob(socket, Number(blob[1]), headers.get("range"), Number(url.searchParams.get("gen") ?? 0));
        else respond(socket, 404, { "content-type": "application/json" }, JSON.stringify({ message: "not found" }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  selfUrl = `http://${host}:${(server.address() as AddressInfo).port}`;
  return {
    url: selfUrl,
    host,
    requests,
    listings: () => listings,
    setBehaviour: (fn) => (behaviour = fn),
    setListing: (fn) => (listing = fn),
    async close() {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
