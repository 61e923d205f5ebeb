import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A real HTTP proxy on loopback, put between the download client and a real ckpt server (not
 * a mock: every byte still comes from the server). It counts what it serves and can inject
 * the faults the client must survive: error statuses, connections cut mid-body, corrupted
 * bytes, stripped headers, held or stalled responses.
 */
export interface ProxiedRequest {
  method: string;
  /** Path without the query string (the query of a presigned URL is its signature). */
  path: string;
  headers: IncomingMessage["headers"];
  /** 1-based count of requests so far with this method and path. */
  nth: number;
}

export type ProxyAction =
  | {
      kind: "forward";
      /** Close the connection after this many body bytes. */
      cutAfter?: number;
      /** Flip the bits of the body byte at this offset. */
      corruptAt?: number;
      /** Response headers to remove. */
      dropHeaders?: string[];
    }
  | { kind: "respond"; status: number; headers?: Record<string, string>; body?: string }
  /** Read this many bytes of the request body, then close the connection (no answer). */
  | { kind: "cut-request"; afterBytes: number };

export interface RecordedRequest {
  method: string;
  path: string;
  range?: string;
  status: number;
}

export interface Proxy {
  url: string;
  /**
   * Where requests go; set once the server behind is up. Paths under `blobs.pathPrefix` (the
   * presigned URLs) go to `blobs.origin` (the S3 endpoint, on that backend), the rest to `baseUrl`.
   */
  setTarget(baseUrl: string, blobs?: { origin: string; pathPrefix: string }): void;
  /** Whether a request path is a presigned URL's (a blob), rather than an API call. */
  isBlob(path: string): boolean;
  /** Decides each request's fate; the default forwards. May wait (to hold a request). */
  setRule(rule: (request: ProxiedRequest) => ProxyAction | Promise<ProxyAction>): void;
  /** Once this many blob body bytes have been served, further body bytes are held back forever. */
  stallAfterBlobBytes(limit: number | null): void;
  /** Body bytes served for presigned-URL (blob) requests. */
  blobBytes(): number;
  requests(): RecordedRequest[];
  resetStats(): void;
  close(): Promise<void>;
}

export async function startProxy(): Promise<Proxy> {
  let target = "";
  let blobTarget = { origin: "", pathPrefix: "/blobs/" };
  const isBlob = (path: string): boolean => path.startsWith(blobTarget.pathPrefix);
  let rule: (request: ProxiedRequest) => ProxyAction | Promise<ProxyAction> = () => ({ kind: "forward" });
  let stallAt: number | null = null;
  let served = 0;
  let recorded: RecordedRequest[] = [];
  const counts = new Map<string, number>();
  const upstreamAgent = new Agent({ keepAlive: true });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?")[0]!;
    const countKey = `${req.method} ${path}`;
    const nth = (counts.get(countKey) ?? 0) + 1;
    counts.set(countKey, nth);
    const record: RecordedRequest = { method: req.method ?? "GET", path, range: req.headers.range, status: 0 };
    recorded.push(record);
    const action = await rule({ method: req.method ?? "GET", path, headers: req.headers, nth });
    if (action.kind === "cut-request") {
      let seen = 0;
      req.on("data", (chunk: Buffer) => {
        seen += chunk.length;
        if (seen >= action.afterBytes) req.socket.destroy();
      });
      req.on("end", () => req.socket.destroy());
      return;
    }
    if (action.kind === "respond") {
      record.status = action.status;
      res.writeHead(action.status, { "content-type": "application/json", ...action.headers });
      res.end(action.body ?? JSON.stringify({ message: `injected ${action.status}` }));
      return;
    }
    // The Host header passes unchanged: an S3 signature covers it (the server signs URLs for
    // this proxy's address, CKPT_S3_PUBLIC_ENDPOINT), and ckpt's own URLs ignore it.
    const origin = isBlob(path) ? blobTarget.origin : target;
    const upstream = request(origin + req.url, { method: req.method, headers: req.headers, agent: upstreamAgent });
    upstream.on("error", () => res.destroy());
    upstream.on("response", (up) => {
      record.status = up.statusCode ?? 0;
      const headers = { ...up.headers };
      for (const name of action.dropHeaders ?? []) delete headers[name];
      res.writeHead(up.statusCode ?? 502, headers);
      let offset = 0;
      up.on("data", (chunk: Buffer) => {
        if (res.destroyed) return;
        if (isBlob(path) && stallAt !== null && served >= stallAt) {
          up.pause(); // held forever: the client sees a live connection that stopped sending
          return;
        }
        let out = chunk;
        if (action.corruptAt !== undefined && action.corruptAt >= offset && action.corruptAt < offset + chunk.length) {
          out = Buffer.from(chunk);
          out[action.corruptAt - offset] = out[action.corruptAt - offset]! ^ 0xff;
        }
        if (action.cutAfter !== undefined && offset + out.length >= action.cutAfter) {
          out = out.subarray(0, Math.max(0, action.cutAfter - offset));
          if (isBlob(path)) served += out.length;
          res.write(out, () => res.destroy());
          up.destroy();
          return;
        }
        offset += out.length;
        if (isBlob(path)) served += out.length;
        if (!res.write(out)) {
          up.pause();
          res.once("drain", () => up.resume());
        }
      });
      up.on("end", () => res.end());
    });
    req.pipe(upstream);
  };

  const server: Server = createServer((req, res) => void handle(req, res).catch(() => res.destroy()));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    setTarget(baseUrl, blobs) {
      target = baseUrl;
      blobTarget = blobs ?? { origin: baseUrl, pathPrefix: "/blobs/" };
    },
    isBlob,
    setRule: (r) => (rule = r),
    stallAfterBlobBytes: (limit) => (stallAt = limit),
    blobBytes: () => served,
    requests: () => recorded,
    resetStats() {
      served = 0;
      recorded = [];
      counts.clear();
    },
    async close() {
      server.closeAllConnections();
      upstreamAgent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
