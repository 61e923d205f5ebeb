import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { startStores } from "../harness/stores.js";
import { sha256 } from "../helpers/api.js";
import { createKey, eventually, heldUpload, projectAndJob, serveOn, sleep } from "./support.js";

/** `ckpt serve --workers 2`: a worker killed with SIGKILL mid-traffic; the other serves on, the dead one is replaced. */

/** Pids of the workers the primary reported listening, in order. */
function listeningWorkers(output: string): number[] {
  return output
    .split("\n")
    .filter((line) => line.includes('"msg":"worker listening"'))
    .map((line) => (JSON.parse(line) as { pid: number }).pid);
}

/** A download read slowly, on a connection of its own (so the cluster gives it to the next worker). */
function slowDownload(url: string): Promise<{ status: number; body: Buffer } | Error> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    httpRequest(url, { agent: false }, (res) => {
      res.on("data", (d: Buffer) => {
        chunks.push(d);
        res.pause();
        setTimeout(() => res.resume(), 5);
      });
      res.on("end", () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }));
      res.on("error", (err) => resolve(err));
      res.on("aborted", () => resolve(new Error("aborted")));
    })
      .on("error", (err) => resolve(err))
      .end();
  });
}

function getOnNewConnection(url: string, key: string): Promise<number | Error> {
  return new Promise((resolve) => {
    httpRequest(url, { agent: false, headers: { authorization: `Api-Key ${key}` } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode!));
      res.on("error", (err) => resolve(err));
    })
      .on("error", (err) => resolve(err))
      .end();
  });
}

describe("workers", () => {
  test("a worker killed with SIGKILL while downloads and uploads run: the other keeps serving, the dead one is replaced", async () => {
    const stores = await startStores();
    const server = await serveOn(stores, { CKPT_WORKERS: "2" });
    try {
      await eventually("both workers listen", () => listeningWorkers(server.output()).length === 2);
      const [victim, survivor] = listeningWorkers(server.output()) as [number, number];
      const key = await createKey(stores);
      const { client, jobPath } = await projectAndJob(server.baseUrl, key);
      const big = randomBytes(8 << 20);
      const put = await client.put(`${jobPath}/checkpoint_files/0/big.bin`, big);
      assert.equal(put.status, 201);

      // In flight when the worker dies: two held uploads and (where ckpt serves the bytes) four
      // slow downloads, each on its own connection, so both workers have some.
      const uploads = [0, 1].map((i) => {
        const body = randomBytes(64 * 1024);
        const held = heldUpload(`${server.baseUrl}${jobPath}/checkpoint_files/0/held-${i}.bin`, key, body.subarray(0, 1024), [body.subarray(1024)]);
        // Caught at once: the killed worker's upload fails before the test looks at it.
        return { name: `held-${i}.bin`, held, answer: held.response.catch((err: Error) => err) };
      });
      await Promise.all(uploads.map((u) => u.held.firstSent));
      const downloads = stores.backend === "sqlite-local" ? [0, 1, 2, 3].map(() => slowDownload(put.body.url)) : [];
      await sleep(200);

      process.kill(victim, "SIGKILL");
      await eventually("the primary notices and replaces the worker", () => /worker died; starting a replacement/.test(server.output()));
      // From now on every new request is answered, while the replacement starts and after.
      const during = await Promise.all(Array.from({ length: 6 }, () => getOnNewConnection(`${server.baseUrl}${jobPath}`, key)));
      assert.deepEqual(during, [200, 200, 200, 200, 200, 200]);
      await eventually("a replacement worker listens", () => listeningWorkers(server.output()).length === 3);
      const replacement = listeningWorkers(server.output())[2]!;
      assert.ok(replacement !== victim && replacement !== survivor);
      assert.doesNotThrow(() => process.kill(survivor, 0), "the other worker lived on");

      for (const u of uploads) u.held.release();
      const answers = await Promise.all(uploads.map((u) => u.answer));
      const finished = await Promise.all(downloads);
      // What the killed worker was doing failed visibly (a cut connection), never as a short 200;
      // what the other one was doing completed intact.
      for (const f of finished) if (!(f instanceof Error)) assert.equal(sha256(f.body), sha256(big), "a download that ends is complete");
      if (downloads.length > 0) assert.ok(finished.some((f) => !(f instanceof Error)), "the surviving worker's downloads completed");
      const committed = uploads.filter((_, i) => !(answers[i] instanceof Error) && (answers[i] as { status: number }).status === 201).map((u) => u.name);
      const listed = (await client.get(`${jobPath}/checkpoint_files`)).body.presigned_urls.map((f: any) => f.relative_file_name).sort();
      assert.deepEqual(listed, ["big.bin", ...committed].sort(), "exactly the acknowledged uploads are listed");

      // The replacement is a full server: new connections reach both workers and all succeed.
      const afterwards = await Promise.all(Array.from({ length: 8 }, () => getOnNewConnection(`${server.baseUrl}${jobPath}/checkpoint_files`, key)));
      assert.deepEqual(afterwards, Array(8).fill(200));
    } finally {
      server.child.kill("SIGKILL");
      await server.exited;
      await stores.stop();
    }
  });
});
