import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { CkptClient } from "../../src/client/api.js";
import { startTestServer } from "../harness/server.js";
import { contentOf, expectedDigests, FAST, listedDigests, startApiCountingProxy, startCkpt, workspace, type PlannedFile } from "./support.js";

/**
 * Where the training side's bytes go. On S3 the server offers direct uploads (the begin-upload
 * answer's `parts_via_api_server` is false), so `ckpt sync` and `ckpt run` send a large file's
 * parts straight to the store: a proxy in front of the API server counts every request body
 * byte the CLI sends it, and the large file's bytes must not be among them. On the embedded
 * store the parts would pass through the API server anyway, and the file goes as one streamed
 * PUT there. Either way the listed files are exactly the written ones.
 */
const MiB = 1 << 20;
const PART_BYTES = 5 * MiB;
const LARGE: PlannedFile = { name: "checkpoint-1/model.safetensors", chunks: 13, chunkSize: MiB };
const FILES: PlannedFile[] = [LARGE, { name: "checkpoint-1/config.json", chunks: 1, chunkSize: 700 }, { name: "checkpoint-1/trainer_state.json", chunks: 1, chunkSize: 300 }];
const largeBytes = LARGE.chunks * LARGE.chunkSize;

describe("training-side uploads: direct to the store where the server offers it", { concurrency: true }, () => {
  // --max-upload-rate: the throttle wraps the parts' PUTs to the store as it wrapped the streamed ones.
  const variants = [
    { command: "sync", extra: [] },
    { command: "sync", extra: ["--max-upload-rate", "64MiB"] },
    { command: "run", extra: [] },
  ] as const;
  for (const { command, extra } of variants) {
    test(`ckpt ${[command, ...extra].join(" ")}: a large file goes direct on S3, as one streamed PUT on the embedded store`, async (t) => {
      const server = await startTestServer({ env: { CKPT_UPLOAD_PART_SIZE: String(PART_BYTES) } });
      t.after(() => server.stop());
      const apiKey = await server.createKey("org");
      const client = new CkptClient({ apiUrl: server.baseUrl, apiKey });
      const project = await client.upsertProject(`direct-${command}-${extra.length}`);
      const job = await client.createJob(project.id, { name: command });
      const proxy = await startApiCountingProxy(t, server.baseUrl);
      const env = { CKPT_API_URL: proxy.url, CKPT_API_KEY: apiKey };
      const ws = workspace(t);
      const dir = join(ws.path, "checkpoints");

      let args: string[];
      if (command === "sync") {
        for (const file of FILES) {
          mkdirSync(dirname(join(dir, file.name)), { recursive: true });
          writeFileSync(join(dir, file.name), contentOf(file));
        }
        args = ["sync", "--project", project.name, "--job", job.id, ...FAST, ...extra, dir];
      } else {
        const train = ws.script("train.mjs", `for (const file of ${JSON.stringify(FILES)}) await writeSlowly(file, 0);`);
        args = ["run", "--project", project.name, "--job", job.id, "--checkpoint-dir", dir, "--no-logs", ...FAST, "--", process.execPath, train];
      }
      const done = await startCkpt(t, args, env).done;
      assert.equal(done.code, 0, done.stderr);
      assert.deepEqual(await listedDigests(client, project.id, job.id), expectedDigests(FILES));

      const requests = proxy.requests();
      const sentToApi = requests.reduce((n, r) => n + r.bodyBytes, 0);
      const begins = requests.filter((r) => r.method === "POST" && r.path.endsWith("/uploads"));
      const streamedLarge = requests.filter((r) => r.method === "PUT" && r.path.endsWith(`/checkpoint_files/0/${LARGE.name}`));
      if (server.backend === "postgres-s3") {
        assert.equal(streamedLarge.length, 0, "the large file was not streamed through the API server");
        assert.ok(sentToApi < largeBytes / 10, `${sentToApi} request body bytes reached the API server, for a file of ${largeBytes}`);
        assert.equal(begins.length, 1, "one direct upload begun: the large file's");
        assert.equal(requests.filter((r) => r.method === "POST" && r.path.endsWith("/complete")).length, 1);
      } else {
        assert.equal(streamedLarge.length, 1, "one streamed PUT of the large file");
        assert.equal(streamedLarge[0]!.bodyBytes, largeBytes);
        assert.ok(begins.length <= 1, "at most the one begin-upload that learnt the parts would pass the API server");
      }
    });
  }
});
