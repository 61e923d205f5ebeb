import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { postgresAvailable, startPostgres, type PostgresInstance } from "../harness/postgres.js";
import { requireOrSkip } from "../harness/required.js";
import { scaleOutEnv } from "../harness/stores.js";
import { rgwAvailable, startRgw, type RgwInstance } from "../harness/rgw.js";
import { runCli, spawnServer, type ServerProcess } from "../harness/server.js";
import { api, sha256, type Api } from "../helpers/api.js";

let pg: PostgresInstance | null = null;
let rgw: RgwInstance | null = null;
before(async () => {
  if (postgresAvailable() && rgwAvailable()) [pg, rgw] = await Promise.all([startPostgres(), startRgw()]);
});
after(async () => {
  await Promise.all([pg?.stop(), rgw?.stop()]);
});

const ROUNDS = 6;
const RANGE_BYTES = 32 * 1024;
const MiB = 1 << 20;

/**
 * How each name is replaced in a round, by both servers at once, each with other bytes of
 * another size: plain streamed PUTs (one PutObject each); streamed PUTs with a declared digest,
 * some above the S3 part size (multipart uploads straight to their key); a direct upload begun on
 * one server and completed on the other against a streamed PUT through the other.
 */
const NAMES = ["checkpoint-1/plain.bin", "checkpoint-1/declared.bin", "checkpoint-2/direct.bin"] as const;

function sizeFor(name: string, round: number, side: number): number {
  const jitter = Math.floor(Math.random() * 5000);
  if (name === "checkpoint-1/declared.bin") return (side === round % 2 ? 9 * MiB : 200_000) + jitter;
  return 150_000 + (round * 2 + side) * 37_000 + jitter;
}

async function directUpload(begin: Api, complete: Api, jobPath: string, name: string, bytes: Buffer): Promise<number> {
  const started = await begin.post(`${jobPath}/uploads`, { node_rank: 0, relative_file_name: name, size_bytes: bytes.length, sha256: sha256(bytes) });
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const parts = [];
  for (const p of started.body.parts) {
    const start = (p.part_number - 1) * started.body.part_size_bytes;
    const r = await fetch(p.url, { method: "PUT", body: bytes.subarray(start, start + p.size_bytes) });
    await r.arrayBuffer();
    assert.equal(r.status, 200);
    parts.push({ part_number: p.part_number, etag: r.headers.get("etag")! });
  }
  return (await complete.post(`${jobPath}/uploads/${started.body.upload_id}/complete`, { parts })).status;
}

/**
 * Reads a URL handed out before a replacement with ranged GETs, half of them while the
 * replacement runs and the rest after it finished. Every range answered must be the old bytes at
 * that offset; once the URL fails it must fail cleanly (404 or 412). Returns whether it failed.
 */
async function readAcrossReplacement(url: string, old: Buffer, replacement: Promise<unknown>): Promise<{ failedCleanly: boolean; rangesRead: number }> {
  const ranges: [number, number][] = [];
  for (let start = 0; start < old.length; start += RANGE_BYTES) ranges.push([start, Math.min(old.length, start + RANGE_BYTES) - 1]);
  let rangesRead = 0;
  const readRange = async ([start, end]: [number, number]): Promise<"ok" | "gone"> => {
    const r = await fetch(url, { headers: { range: `bytes=${start}-${end}` } });
    const body = Buffer.from(await r.arrayBuffer());
    if (r.status === 404 || r.status === 412) return "gone";
    assert.equal(r.status, 206, `range ${start}-${end}: status ${r.status}`);
    assert.ok(body.equals(old.subarray(start, end + 1)), `range ${start}-${end} of a URL handed out before a replacement served other bytes than the old version's`);
    rangesRead++;
    return "ok";
  };
  const half = Math.ceil(ranges.length / 2);
  let failedCleanly = false;
  for (const range of ranges.slice(0, half)) if ((await readRange(range)) === "gone") failedCleanly = true;
  await replacement;
  if (!failedCleanly) for (const range of ranges.slice(half)) if ((await readRange(range)) === "gone") failedCleanly = true;
  if (!failedCleanly) assert.equal(rangesRead, ranges.length, "served whole");
  return { failedCleanly, rangesRead };
}

test("concurrent replacements through two servers: every listing entry's size and digest are the bytes its URL serves, old URLs never serve a mix, gc finds no orphan", async (t) => {
  if (!requireOrSkip("postgres", postgresAvailable(), t) || !requireOrSkip("rgw", rgwAvailable(), t) || !pg || !rgw) return;
  const env = { ...(await scaleOutEnv(pg, rgw)).env, CKPT_UPLOAD_PART_SIZE: String(5 << 20) };
  const dirs = [mkdtempSync(join(tmpdir(), "ckpt-a-")), mkdtempSync(join(tmpdir(), "ckpt-b-")), mkdtempSync(join(tmpdir(), "ckpt-gc-"))];
  const [a, b] = (await Promise.all(dirs.slice(0, 2).map((d) => spawnServer(d, env)))) as [ServerProcess, ServerProcess];
  try {
    const keyRun = await runCli(["admin", "create-key", "--org", "acme"], { env });
    assert.equal(keyRun.code, 0, keyRun.stderr);
    const key = keyRun.stdout.trim();
    const servers = [api(a.baseUrl, key), api(b.baseUrl, key)] as const;
    const [viaA, viaB] = servers;
    const project = (await viaA.post("/v1/training_projects", { training_project: { name: "p" } })).body.training_project;
    const job = (await viaB.post(`/v1/training_projects/${project.id}/jobs`, { training_job: {} })).body.training_job;
    const jobPath = `/v1/training_projects/${project.id}/jobs/${job.id}`;

    const uploaded = new Map<string, Map<string, Buffer>>(NAMES.map((n) => [n, new Map()]));
    const remember = (name: string, bytes: Buffer) => uploaded.get(name)!.set(sha256(bytes), bytes);
    for (const name of NAMES) {
      const bytes = randomBytes(sizeFor(name, 0, 0));
      remember(name, bytes);
      assert.equal((await viaA.put(`${jobPath}/checkpoint_files/0/${name}`, bytes)).status, 201);
    }

    const listing = async (via: Api) => {
      const r = await via.get(`${jobPath}/checkpoint_files`);
      assert.equal(r.status, 200);
      return r.body.presigned_urls as { url: string; relative_file_name: string; node_rank: number; size_bytes: number }[];
    };
    /** Each listed file's bytes, checked against its listing entry and its row's digest (the tensors route lists every file with its sha256). */
    const checkListing = async (via: Api) => {
      const entries = await listing(via);
      assert.deepEqual(entries.map((e) => e.relative_file_name).sort(), [...NAMES].sort());
      const digests = new Map<string, string>();
      for (const checkpoint of ["checkpoint-1", "checkpoint-2"])
        for (const f of (await via.get(`${jobPath}/checkpoints/${checkpoint}/tensors`)).body.files) digests.set(f.relative_file_name, f.sha256);
      const served = new Map<string, Buffer>();
      for (const entry of entries) {
        const r = await fetch(entry.url);
        const body = Buffer.from(await r.arrayBuffer());
        assert.equal(r.status, 200, entry.relative_file_name);
        assert.equal(body.length, entry.size_bytes, `${entry.relative_file_name}: the listed size is the size served`);
        assert.equal(sha256(body), digests.get(entry.relative_file_name), `${entry.relative_file_name}: the row's sha256 is the digest of the bytes served`);
        assert.ok(uploaded.get(entry.relative_file_name)!.has(sha256(body)), `${entry.relative_file_name}: serves bytes some upload sent`);
        served.set(entry.relative_file_name, body);
      }
      return { entries, served };
    };

    let staleUrlsFailedCleanly = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      const before = await checkListing(round % 2 ? viaA : viaB);
      const uploads = NAMES.flatMap((name) =>
        [0, 1].map(async (side) => {
          const bytes = randomBytes(sizeFor(name, round, side));
          remember(name, bytes);
          const via = servers[side]!;
          let status: number;
          if (name === "checkpoint-2/direct.bin" && side === 0) status = await directUpload(viaA, viaB, jobPath, name, bytes);
          else
            status = (await via.put(`${jobPath}/checkpoint_files/0/${name}`, bytes, name === "checkpoint-1/declared.bin" ? { "x-ckpt-sha256": sha256(bytes) } : {}))
              .status;
          assert.equal(status, 201, `round ${round}: ${name} through ${side ? "B" : "A"}`);
        }),
      );
      const replaced = Promise.allSettled(uploads);
      const readers = before.entries.map((entry) => readAcrossReplacement(entry.url, before.served.get(entry.relative_file_name)!, replaced));
      const outcomes = await Promise.allSettled(readers);
      for (const settled of [...(await replaced), ...outcomes]) if (settled.status === "rejected") throw settled.reason;
      for (const outcome of outcomes) if (outcome.status === "fulfilled" && outcome.value.failedCleanly) staleUrlsFailedCleanly++;

      const [listA, listB] = [await listing(viaA), await listing(viaB)];
      const strip = (l: { url: string }[]) => l.map(({ url: _url, ...rest }) => rest);
      assert.deepEqual(strip(listA), strip(listB), `round ${round}: both servers list the same`);
      await checkListing(round % 2 ? viaB : viaA);
    }
    assert.ok(staleUrlsFailedCleanly > 0, "some URL was read after its file was replaced");

    const gc = await runCli(["admin", "gc", "--min-age", "0", "-o", "json", "--data-dir", dirs[2]!], { env });
    assert.equal(gc.code, 0, gc.stderr);
    const report = JSON.parse(gc.stdout);
    assert.deepEqual(report.orphans, [], "every replaced version was deleted by the commit that unreferenced it");
    await checkListing(viaA);
    await checkListing(viaB);
  } finally {
    a.child.kill("SIGKILL");
    b.child.kill("SIGKILL");
    await Promise.all([a.exited, b.exited]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});
