import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A small real HTTP server on loopback that plays a checkpoint API we do not control: it lists
 * whatever entries a test gives it (hostile names included) and serves their bytes at
 * `/blob/<index>` with ranges, as a presigned-URL host would. For behaviour a real ckpt server
 * refuses to produce.
 */
export interface FakeEntry {
  relative_file_name: unknown;
  node_rank: unknown;
  content: Buffer;
}

export interface FakeApi {
  url: string;
  blobRequests(): number;
  close(): Promise<void>;
}

export async function startFakeApi(projectId: string, jobId: string, entries: FakeEntry[]): Promise<FakeApi> {
  let blobRequests = 0;
  const listPath = `/v1/training_projects/${projectId}/jobs/${jobId}/checkpoint_files`;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://fake");
    if (url.pathname === listPath) {
      const base = `http://${req.headers.host}`;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          presigned_urls: entries.map((e, i) => ({
            url: `${base}/blob/${i}?sig=secret`,
            relative_file_name: e.relative_file_name,
            node_rank: e.node_rank,
            size_bytes: e.content.length,
            last_modified: "2025-01-01T00:00:00Z",
          })),
          next_page_token: null,
          total_count: entries.length,
        }),
      );
      return;
    }
    const blob = /^\/blob\/([0-9]+)$/.exec(url.pathname);
    const entry = blob ? entries[Number(blob[1])] : undefined;
    if (!entry) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ message: "not found" }));
      return;
    }
    blobRequests++;
    const range = /^bytes=([0-9]+)-([0-9]+)$/.exec(req.headers.range ?? "");
    const start = range ? Number(range[1]) : 0;
    const end = range ? Math.min(Number(range[2]), entry.content.length - 1) : entry.content.length - 1;
    const headers: Record<string, string | number> = { "content-length": end - start + 1, etag: `"fake-${blob![1]}"` };
    if (range) headers["content-range"] = `bytes ${start}-${end}/${entry.content.length}`;
    res.writeHead(range ? 206 : 200, headers);
    res.end(entry.content.subarray(start, end + 1));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    blobRequests: () => blobRequests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
