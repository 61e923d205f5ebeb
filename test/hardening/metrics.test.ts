import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { freePort } from "../harness/server.js";
import { startStores } from "../harness/stores.js";
import { sha256 } from "../helpers/api.js";
import { createKey, eventually, projectAndJob, serveOn } from "./support.js";

/**
 * /metrics after a scripted session, on the backend under test, with two workers (the primary
 * sums their counters): every counter moved by exactly what the session did.
 */

/** Prometheus text format → series (`name{labels}`) → value. */
function parseMetrics(text: string): Map<string, number> {
  const series = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    series.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return series;
}

/** A GET on a connection of its own: the cluster hands each new connection to the next worker. */
function getOnNewConnection(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    httpRequest(url, { agent: false, headers }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode!));
    })
      .on("error", reject)
      .end();
  });
}

describe("metrics", () => {
  test("after a scripted session every counter moved by exactly what was done, summed over two workers", async () => {
    const stores = await startStores();
    const metricsPort = await freePort();
    const server = await serveOn(stores, { CKPT_WORKERS: "2", CKPT_METRICS_PORT: String(metricsPort) });
    const scrape = async () => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /text\/plain/);
      return parseMetrics(await res.text());
    };
    try {
      assert.equal((await fetch(`${server.baseUrl}/metrics`)).status, 404, "/metrics is not on the API's port");
      const key = await createKey(stores);
      const { client, project, job, jobPath } = await projectAndJob(server.baseUrl, key);
      const before = await scrape();
      const delta = (after: Map<string, number>, series: string) => (after.get(series) ?? 0) - (before.get(series) ?? 0);

      // The session.
      const files = [randomBytes(1000), randomBytes(20_000), randomBytes(300_000)];
      const puts = await Promise.all(files.map((bytes, i) => client.put(`${jobPath}/checkpoint_files/0/f${i}.bin`, bytes)));
      assert.deepEqual(puts.map((r) => r.status), [201, 201, 201]);
      const refused = await client.put(`${jobPath}/checkpoint_files/0/bad.bin`, randomBytes(500), { "x-ckpt-sha256": "0".repeat(64) });
      assert.equal(refused.status, 400);
      // An upload whose client goes away mid-body.
      await new Promise<void>((resolve) => {
        const { port } = new URL(server.baseUrl);
        const socket = connect(Number(port), "127.0.0.1", () => {
          socket.write(`PUT ${jobPath}/checkpoint_files/0/cut.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Api-Key ${key}\r\nContent-Length: 1000000\r\n\r\n`);
          socket.write(Buffer.alloc(1000), () => setTimeout(() => socket.destroy(), 300));
        });
        socket.on("close", () => resolve());
        socket.on("error", () => {});
      });
      const direct = randomBytes(4000);
      const begin = await client.post(`${jobPath}/uploads`, { node_rank: 1, relative_file_name: "direct.bin", size_bytes: direct.length, sha256: sha256(direct) });
      assert.equal(begin.status, 200, JSON.stringify(begin.body));
      assert.equal(begin.body.parts.length, 1);
      const part = await fetch(begin.body.parts[0].url, { method: "PUT", body: direct });
      await part.arrayBuffer();
      assert.equal(part.status, 200);
      const complete = await client.post(`${jobPath}/uploads/${begin.body.upload_id}/complete`, { parts: [{ part_number: 1, etag: part.headers.get("etag") }] });
      assert.equal(complete.status, 201, JSON.stringify(complete.body));
      const abandoned = await client.post(`${jobPath}/uploads`, { node_rank: 1, relative_file_name: "abandoned.bin", size_bytes: 10 });
      assert.equal((await client.del(`${jobPath}/uploads/${abandoned.body.upload_id}`)).status, 200);
      const listing = await client.get(`${jobPath}/checkpoint_files`);
      assert.equal(listing.body.presigned_urls.length, 4);
      const downloaded = listing.body.presigned_urls.filter((f: any) => f.relative_file_name !== "f0.bin");
      for (const f of downloaded) assert.equal((await fetch(f.url).then(async (r) => (await r.arrayBuffer(), r))).status, 200);
      for (let i = 0; i < 10; i++) assert.equal(await getOnNewConnection(`${server.baseUrl}/v1/training_projects/zzzz${i}`, { authorization: `Api-Key ${key}` }), 404);
      assert.equal((await fetch(`${server.baseUrl}/no/such/${project.id}`)).status, 404);
      for (const probe of ["/livez", "/readyz", "/healthz", "/livez"]) assert.equal((await fetch(server.baseUrl + probe)).status, 200);

      // The cut upload is counted once the server has seen its connection close.
      let after = await scrape();
      await eventually("the cut upload is counted", async () => delta((after = await scrape()), `ckpt_uploads_failed_total{kind="streamed",reason="CLIENT_CLOSED"}`) === 1);
      const uploadRoute = "/v1/training_projects/:training_project_id/jobs/:training_job_id/checkpoint_files/:node_rank/*";
      const requests = (method: string, route: string, statusClass: string) =>
        delta(after, `ckpt_http_requests_total{method="${method}",route="${route}",status_class="${statusClass}"}`);
      assert.equal(requests("PUT", uploadRoute, "2xx"), 3);
      assert.equal(requests("PUT", uploadRoute, "4xx"), 2, "the refused one, and the cut one as 499");
      assert.equal(requests("GET", "/v1/training_projects/:training_project_id", "4xx"), 10, "both workers' counts are summed");
      assert.equal(requests("GET", "(unmatched)", "4xx"), 1);
      assert.equal(requests("GET", "/v1/training_projects/:training_project_id/jobs/:training_job_id/checkpoint_files", "2xx"), 1);
      assert.equal(
        delta(after, `ckpt_http_request_duration_seconds_count{method="PUT",route="${uploadRoute}",status_class="2xx"}`),
        3,
        "each request timed once",
      );
      assert.equal(
        delta(after, `ckpt_http_request_body_bytes_total{route="${uploadRoute}"}`),
        files.reduce((n, f) => n + f.length, 0) + 500 + 1_000_000,
      );
      assert.equal(delta(after, `ckpt_uploads_begun_total{kind="streamed"}`), 5);
      assert.equal(delta(after, `ckpt_uploads_failed_total{kind="streamed",reason="CLIENT_CLOSED"}`), 1);
      assert.equal(delta(after, `ckpt_uploads_completed_total{kind="streamed"}`), 3);
      assert.equal(delta(after, `ckpt_uploads_failed_total{kind="streamed",reason="BAD_REQUEST"}`), 1);
      assert.equal(delta(after, `ckpt_uploads_begun_total{kind="direct"}`), 2);
      assert.equal(delta(after, `ckpt_uploads_completed_total{kind="direct"}`), 1);
      assert.equal(delta(after, `ckpt_uploads_failed_total{kind="direct",reason="ABORTED"}`), 1);
      // A URL in each upload's answer (4) and in the listing (4); a part URL per direct upload.
      assert.equal(delta(after, `ckpt_presigned_urls_issued_total{method="GET"}`), 8);
      assert.equal(delta(after, `ckpt_presigned_urls_issued_total{method="PUT"}`), 2);
      if (stores.backend === "sqlite-local") {
        // Downloads and parts went through ckpt (its download fast path and its part route).
        assert.equal(requests("GET", "/blobs/*", "2xx"), 3);
        const sizes = downloaded.map((f: any) => f.size_bytes as number);
        assert.equal(delta(after, `ckpt_http_response_body_bytes_total{route="/blobs/*"}`), sizes.reduce((n: number, s: number) => n + s, 0));
        assert.equal(delta(after, `ckpt_http_request_body_bytes_total{route="/blobs/uploads/:uploadId/:partNumber"}`), direct.length);
      } else {
        assert.ok(delta(after, `ckpt_metadata_pool_connections{state="idle"}`) !== undefined);
        assert.ok(after.has(`ckpt_metadata_pool_waiting_requests`), "the PostgreSQL pool is reported");
        assert.ok(delta(after, `ckpt_blob_store_call_duration_seconds_count{operation="put",outcome="ok"}`) >= 3);
      }
      assert.ok(delta(after, `ckpt_metadata_store_query_duration_seconds_count{operation="findApiKey",outcome="ok"}`) >= 10);
      assert.ok(delta(after, `ckpt_metadata_store_query_duration_seconds_count{operation="commitFile",outcome="ok"}`) === 4);
      assert.equal(after.get("ckpt_cluster_workers"), 2);
      assert.ok((after.get("ckpt_process_resident_memory_bytes") ?? 0) > 0, "process metrics, prefixed");

      // Bounded labels: no probe, no id, no raw URL.
      for (const name of after.keys()) {
        assert.doesNotMatch(name, /livez|readyz|healthz/, name);
        for (const id of [project.id, job.id, "zzzz", begin.body.upload_id]) assert.ok(!name.includes(id), `${name} names an id`);
        assert.ok(name.startsWith("ckpt_"), `${name} is prefixed`);
      }
    } finally {
      server.child.kill("SIGKILL");
      await server.exited;
      await stores.stop();
    }
  });
});
