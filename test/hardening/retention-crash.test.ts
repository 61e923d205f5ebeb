import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { startStores } from "../harness/stores.js";
import { api, sha256 } from "../helpers/api.js";
import { collectGarbageIn, createKey, projectAndJob, serveOn, sleep } from "./support.js";

const CHECKPOINTS = 12;
const FILES_PER_RANK = 4;

describe("kill -9 during a retention apply", () => {
  test("after restart every planned checkpoint is wholly there or wholly gone, and no blob of a deleted one remains", async () => {
    const stores = await startStores();
    const key = await createKey(stores);
    let server = await serveOn(stores);
    let sawMidApply = false;
    try {
      // Each round kills the server at a later moment of its apply, until one round caught it
      // half-way (some checkpoints deleted, some not yet): the state a crash-safe apply must survive.
      for (const [round, killAfterMs] of [0, 10, 25, 50, 100, 200, 400].entries()) {
        if (sawMidApply) break;
        const { client, project, job, jobPath } = await projectAndJob(server.baseUrl, key, `round-${round}`);
        const files = new Map<string, Buffer>();
        for (let c = 0; c < CHECKPOINTS; c++)
          for (const rank of [0, 1])
            for (let f = 0; f <= FILES_PER_RANK; f++) {
              const name = f === FILES_PER_RANK ? `step-${c}/COMPLETE` : `step-${c}/shard-${f}.bin`;
              const bytes = f === FILES_PER_RANK ? Buffer.alloc(0) : randomBytes(3000 + f);
              files.set(`${rank}/${name}`, bytes);
              assert.equal((await client.put(`${jobPath}/checkpoint_files/${rank}/${name}`, bytes)).status, 201);
            }
        const projectPath = `/v1/training_projects/${project.id}`;
        assert.equal((await client.call("PUT", `${projectPath}/retention`, { keep_last: 1 })).status, 200);
        const planned = (await client.get(`${projectPath}/retention/plan`)).body.delete.map((c: any) => c.checkpoint_id as string);
        assert.equal(planned.length, CHECKPOINTS - 1);

        const applying = client.post(`${projectPath}/retention/apply`).catch(() => null);
        await sleep(killAfterMs);
        server.child.kill("SIGKILL");
        await applying;
        await server.exited;

        server = await serveOn(stores); // recovers: finishes deletes that had begun
        const after = api(server.baseUrl, key);
        const listed = (await after.get(`${jobPath}/checkpoint_files?page_size=1000`)).body;
        const byCheckpoint = new Map<string, any[]>();
        for (const f of listed.presigned_urls) {
          const id = f.relative_file_name.split("/")[0];
          byCheckpoint.set(id, [...(byCheckpoint.get(id) ?? []), f]);
        }
        const listedCheckpoints = new Set(((await after.get(`${jobPath}/checkpoints`)).body.checkpoints as any[]).map((c) => c.checkpoint_id));
        let gone = 0;
        for (const id of planned) {
          const present = byCheckpoint.get(id) ?? [];
          const jobPrefix = `training_projects/${project.id}/jobs/${job.id}/`;
          const blobs: string[] = [];
          for (const rank of [0, 1])
            for (const folder of [`rank-${rank}/${id}/`, `versions/rank-${rank}/ckpt/${id}/`]) blobs.push(...(await stores.blobKeys(jobPrefix + folder)));
          if (present.length === 0) {
            gone++;
            assert.ok(!listedCheckpoints.has(id), `${id}: no files but still a checkpoint (killed after ${killAfterMs} ms)`);
            assert.deepEqual(blobs, [], `${id}: deleted, yet blobs remain (killed after ${killAfterMs} ms)`);
          } else {
            assert.equal(present.length, 2 * (FILES_PER_RANK + 1), `${id}: partly deleted (killed after ${killAfterMs} ms)`);
            assert.ok(listedCheckpoints.has(id));
            assert.equal(blobs.length, 2 * (FILES_PER_RANK + 1), `${id}: still listed, so every blob stays`);
            for (const f of present) {
              const body = Buffer.from(await (await fetch(f.url)).arrayBuffer());
              assert.equal(sha256(body), sha256(files.get(`${f.node_rank}/${f.relative_file_name}`)!), `${f.relative_file_name} intact`);
            }
          }
        }
        assert.equal(listed.total_count, listed.presigned_urls.length, "total_count counts what is listed");
        if (gone > 0 && gone < planned.length) sawMidApply = true;
        // Applying again finishes the job; nothing is left without its row.
        assert.equal((await after.post(`${projectPath}/retention/apply`)).status, 200);
        assert.deepEqual([...((await after.get(`${jobPath}/checkpoints`)).body.checkpoints as any[]).map((c) => c.checkpoint_id)], [`step-${CHECKPOINTS - 1}`]);
        const report = await collectGarbageIn(stores, { minAgeMs: 0 });
        assert.deepEqual(report.orphans.filter((o) => o.key.includes(`/jobs/${job.id}/`)), [], "no blob left without its row");
      }
      assert.ok(sawMidApply, "no round killed the server in the middle of an apply: the test did not test what it claims");
    } finally {
      server.child.kill("SIGKILL");
      await server.exited;
      await stores.stop();
    }
  });
});
