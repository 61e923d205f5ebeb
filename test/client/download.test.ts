import assert from "node:assert/strict";
import { existsSync, lstatSync, mkdirSync, readdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { downloadCheckpoint, type DownloadEvent } from "../../src/client/index.js";
import { startFakeApi } from "./support/fake-api.js";
import { bytes, expectedTree, MiB, putFile, readTree, seedJob, sha256, tempDir, type FixtureFile } from "./support/fixtures.js";
import { startProxiedServer } from "./support/proxied-server.js";

/** Content digests of a folder tree, so a mismatch prints names and digests, not megabytes. */
function digests(tree: Map<string, Buffer>): Record<string, string> {
  return Object.fromEntries([...tree].sort(([a], [b]) => a.localeCompare(b)).map(([name, content]) => [name, sha256(content)]));
}

const fastRetries = { baseDelayMs: 5, maxDelayMs: 50 };

test("downloads every rank, nested folders, empty and multi-part files byte for byte; a second run fetches nothing", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const files: FixtureFile[] = [
    { rank: 0, name: "checkpoint-1/model.safetensors", content: bytes(5 * MiB + 123) },
    { rank: 0, name: "checkpoint-1/config.json", content: Buffer.from('{"hidden_size": 8}') },
    { rank: 0, name: "checkpoint-1/empty.txt", content: Buffer.alloc(0) },
    { rank: 0, name: "checkpoint-2/deep/a/b/c.bin", content: bytes(300_000) },
    { rank: 1, name: "checkpoint-1/model.safetensors", content: bytes(2 * MiB + 1) },
    { rank: 1, name: "checkpoint-1/empty.txt", content: Buffer.alloc(0) },
    { rank: 2, name: "root.txt", content: Buffer.from("at the root") },
  ];
  const job = await seedJob(server, files, { apiUrl: proxy.url });
  const dest = tempDir();
  t.after(dest.remove);
  const events: DownloadEvent[] = [];
  const options = { client: job.client, projectId: job.projectId, jobId: job.jobId, dest: dest.path, partSize: MiB, partsPerFile: 3, concurrency: 3 };

  const summary = await downloadCheckpoint({ ...options, onProgress: (e) => events.push(e) });

  assert.deepEqual(summary.failed, []);
  assert.equal(summary.downloaded, files.length);
  // Exactly the pushed files: nothing missing, nothing extra (no partial or state files left).
  assert.deepEqual(digests(readTree(dest.path)), digests(expectedTree(files)));
  const verification = Object.fromEntries(events.flatMap((e) => (e.type === "file-done" ? [[e.file.localName, e.verified]] : [])));
  for (const f of files) assert.equal(verification[`rank-${f.rank}/${f.name}`], f.content.length > 0 ? "sha256" : "size", f.name);
  // Each announced SHA-256, checked as the bytes landed, is in the summary (the manifest takes it
  // from there); an empty file is created, not fetched, and its digest is not announced.
  for (const f of files) assert.equal(summary.files.find((e) => e.localName === `rank-${f.rank}/${f.name}`)?.sha256, f.content.length > 0 ? sha256(f.content) : undefined, f.name);
  // The 5 MiB file came as six ranged parts.
  const bigPath = await server.blobPath(job.projectId, job.jobId, 0, "checkpoint-1/model.safetensors");
  assert.equal(proxy.requests().filter((r) => r.path === bigPath && r.range).length, 6);

  proxy.resetStats();
  const again = await downloadCheckpoint(options);
  assert.equal(again.downloaded, 0);
  assert.equal(again.skipped, files.length);
  assert.equal(proxy.blobBytes(), 0);
});

test("selection: latest checkpoint, globs on names, ranks, flat layout; a dry run writes nothing", async (t) => {
  const { server } = await startProxiedServer(t);
  const files: FixtureFile[] = [
    { rank: 0, name: "checkpoint-100/config.json", content: Buffer.from("{}") },
    { rank: 0, name: "checkpoint-100/model.bin", content: bytes(1000) },
    { rank: 1, name: "checkpoint-100/model.bin", content: bytes(1000) },
    { rank: 0, name: "checkpoint-200/config.json", content: Buffer.from("{}") },
    { rank: 0, name: "checkpoint-200/nested/tokenizer.json", content: Buffer.from("{}") },
    { rank: 1, name: "checkpoint-200/model.bin", content: bytes(1000) },
  ];
  const job = await seedJob(server, files);
  const dest = tempDir();
  t.after(dest.remove);
  const plan = async (selection: object): Promise<string[]> => {
    const summary = await downloadCheckpoint({ client: job.client, projectId: job.projectId, jobId: job.jobId, dest: join(dest.path, "out"), dryRun: true, ...selection });
    return summary.files.map((f) => f.localName).sort();
  };

  assert.deepEqual(await plan({ checkpoint: "latest" }), [
    "rank-0/checkpoint-200/config.json",
    "rank-0/checkpoint-200/nested/tokenizer.json",
    "rank-1/checkpoint-200/model.bin",
  ]);
  assert.deepEqual(await plan({ include: ["*.json"], checkpoint: "checkpoint-200" }), [
    "rank-0/checkpoint-200/config.json",
    "rank-0/checkpoint-200/nested/tokenizer.json",
  ]);
  assert.deepEqual(await plan({ include: ["checkpoint-200/*"] }), ["rank-0/checkpoint-200/config.json", "rank-1/checkpoint-200/model.bin"]);
  assert.deepEqual(await plan({ nodeRanks: [1], flat: true }), ["checkpoint-100/model.bin", "checkpoint-200/model.bin"]);
  await assert.rejects(plan({ flat: true }), /single node rank.*0, 1/);
  assert.equal(existsSync(join(dest.path, "out")), false, "a dry run must not create anything");
});

test("an aborted download resumes without fetching its completed parts again", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const files: FixtureFile[] = [{ rank: 0, name: "model.safetensors", content: bytes(8 * MiB) }];
  const job = await seedJob(server, files, { apiUrl: proxy.url });
  const dest = tempDir();
  t.after(dest.remove);
  const options = { client: job.client, projectId: job.projectId, jobId: job.jobId, dest: dest.path, partSize: MiB, partsPerFile: 2, concurrency: 2 };

  const controller = new AbortController();
  let partsDone = 0;
  await assert.rejects(
    downloadCheckpoint({ ...options, signal: controller.signal, onProgress: (e) => e.type === "part-done" && ++partsDone === 3 && controller.abort() }),
    { name: "AbortError" },
  );
  const firstRun = proxy.blobBytes();
  proxy.resetStats();

  const summary = await downloadCheckpoint(options);
  const secondRun = proxy.blobBytes();
  assert.equal(summary.files[0]!.action, "resume");
  assert.ok(summary.files[0]!.resumableBytes >= 3 * MiB);
  assert.ok(secondRun <= 5 * MiB, `the second run fetched ${secondRun} bytes: completed parts were fetched again`);
  // At most the two parts in flight at the abort are fetched twice.
  assert.ok(firstRun + secondRun <= 10 * MiB, `${firstRun} + ${secondRun} bytes for an 8 MiB file`);
  assert.deepEqual(digests(readTree(dest.path)), digests(expectedTree(files)));
});

test("a file replaced on the server is started over, never stitched from two versions", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const original: FixtureFile = { rank: 0, name: "model.safetensors", content: bytes(6 * MiB) };
  const job = await seedJob(server, [original], { apiUrl: proxy.url });
  const options = { client: job.client, projectId: job.projectId, jobId: job.jobId, partSize: MiB, partsPerFile: 2, concurrency: 2 };

  await t.test("between runs", async () => {
    const dest = tempDir();
    t.after(dest.remove);
    const controller = new AbortController();
    let partsDone = 0;
    await assert.rejects(
      downloadCheckpoint({ ...options, dest: dest.path, signal: controller.signal, onProgress: (e) => e.type === "part-done" && ++partsDone === 2 && controller.abort() }),
      { name: "AbortError" },
    );
    const replacement = { ...original, content: bytes(6 * MiB) };
    await putFile(server, job.apiKey, job.projectId, job.jobId, replacement);
    const summary = await downloadCheckpoint({ ...options, dest: dest.path });
    assert.equal(summary.files[0]!.action, "download", "the old version's parts must not be resumed");
    assert.deepEqual(digests(readTree(dest.path)), digests(expectedTree([replacement])));
  });

  await t.test("during a run", async () => {
    const dest = tempDir();
    t.after(dest.remove);
    const replacement = { ...original, content: bytes(6 * MiB) };
    proxy.resetStats();
    let replaced: Promise<void> | null = null;
    // Requests after the first two wait until the file has been replaced on the server.
    const path = await server.blobPath(job.projectId, job.jobId, 0, original.name);
    proxy.setRule(async (request) => {
      if (request.path === path && request.nth > 2) await (replaced ??= putFile(server, job.apiKey, job.projectId, job.jobId, replacement));
      return { kind: "forward" };
    });
    const events: DownloadEvent[] = [];
    const summary = await downloadCheckpoint({ ...options, dest: dest.path, onProgress: (e) => events.push(e) });
    proxy.setRule(() => ({ kind: "forward" }));
    assert.deepEqual(summary.failed, []);
    assert.ok(events.some((e) => e.type === "retry" && /starting the file over/.test(e.reason)));
    assert.ok(proxy.requests().some((r) => r.path === path && r.status === 404), "the replaced version's URL should answer 404");
    assert.deepEqual(digests(readTree(dest.path)), digests(expectedTree([replacement])));
  });
});

test("URLs that expire mid-run are refreshed by one shared re-list, and the download completes", async (t) => {
  const { server, proxy } = await startProxiedServer(t, { CKPT_URL_TTL: "2" });
  const files: FixtureFile[] = [0, 1, 2].map((i) => ({ rank: 0, name: `shard-${i}.bin`, content: bytes(200_000) }));
  const job = await seedJob(server, files, { apiUrl: proxy.url });
  const dest = tempDir();
  t.after(dest.remove);
  // Every blob request waits until the listed URLs have expired (TTL 2 s, whole seconds).
  let releaseAt = 0;
  proxy.setRule(async (request) => {
    if (request.path.endsWith("/checkpoint_files")) releaseAt ||= Date.now() + 3_100;
    else if (proxy.isBlob(request.path) && Date.now() < releaseAt) await sleep(releaseAt - Date.now());
    return { kind: "forward" };
  });
  const events: DownloadEvent[] = [];
  const summary = await downloadCheckpoint({ client: job.client, projectId: job.projectId, jobId: job.jobId, dest: dest.path, concurrency: 3, onProgress: (e) => events.push(e) });

  assert.deepEqual(summary.failed, []);
  assert.ok(proxy.requests().some((r) => proxy.isBlob(r.path) && r.status === 403), "the URLs should have expired");
  assert.equal(proxy.requests().filter((r) => r.path.endsWith("/checkpoint_files")).length, 2, "one listing, then one shared re-list");
  assert.equal(events.filter((e) => e.type === "urls-refreshed").length, 1);
  assert.deepEqual(digests(readTree(dest.path)), digests(expectedTree(files)));
});

test("500s, 429s and connections cut mid-body are retried, continuing where the body stopped", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const files: FixtureFile[] = [
    { rank: 0, name: "big.bin", content: bytes(3 * MiB + 5) },
    { rank: 0, name: "small.bin", content: bytes(100_000) },
    { rank: 1, name: "other.bin", content: bytes(50_000) },
  ];
  const job = await seedJob(server, files, { apiUrl: proxy.url });
  const big = await server.blobPath(job.projectId, job.jobId, 0, "big.bin");
  const small = await server.blobPath(job.projectId, job.jobId, 0, "small.bin");
  proxy.setRule((request) => {
    if (request.path.endsWith("/checkpoint_files") && request.nth === 1) return { kind: "respond", status: 503 };
    if (request.path === big && request.nth === 1) return { kind: "respond", status: 500 };
    if (request.path === big && request.nth === 2) return { kind: "respond", status: 429, headers: { "retry-after": "0" } };
    if (request.path === big && request.nth === 3) return { kind: "forward", cutAfter: 200_000 };
    if (request.path === big && request.nth === 5) return { kind: "respond", status: 503 };
    if (request.path === small && request.nth === 1) return { kind: "forward", cutAfter: 1_000 };
    if (request.path === small && request.nth === 2) return { kind: "respond", status: 502 };
    return { kind: "forward" };
  });
  const dest = tempDir();
  t.after(dest.remove);
  const events: DownloadEvent[] = [];
  const summary = await downloadCheckpoint({
    client: job.client,
    projectId: job.projectId,
    jobId: job.jobId,
    dest: dest.path,
    partSize: MiB,
    partsPerFile: 2,
    retry: fastRetries,
    onProgress: (e) => events.push(e),
  });

  assert.deepEqual(summary.failed, []);
  assert.deepEqual(digests(readTree(dest.path)), digests(expectedTree(files)));
  assert.ok(events.filter((e) => e.type === "retry").length >= 6);
  // After a cut, the retry asks for the rest of the part, not the part again.
  const resumedMidPart = proxy.requests().some((r) => r.path === big && r.range !== undefined && Number(/bytes=([0-9]+)-/.exec(r.range)![1]) % MiB !== 0);
  assert.ok(resumedMidPart, "no request continued from inside a part");
});

test("bytes corrupted in transit fail the digest check and the file is fetched again", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const files: FixtureFile[] = [
    { rank: 0, name: "single.bin", content: bytes(500_000) },
    { rank: 0, name: "parts.bin", content: bytes(3 * MiB) },
  ];
  const job = await seedJob(server, files, { apiUrl: proxy.url });
  const single = await server.blobPath(job.projectId, job.jobId, 0, "single.bin");
  const parts = await server.blobPath(job.projectId, job.jobId, 0, "parts.bin");
  proxy.setRule((request) =>
    (request.path === single && request.nth === 1) || (request.path === parts && request.nth === 2) ? { kind: "forward", corruptAt: 1234 } : { kind: "forward" },
  );
  const dest = tempDir();
  t.after(dest.remove);
  const events: DownloadEvent[] = [];
  const summary = await downloadCheckpoint({ client: job.client, projectId: job.projectId, jobId: job.jobId, dest: dest.path, partSize: MiB, onProgress: (e) => events.push(e) });

  assert.deepEqual(summary.failed, []);
  const digestRetries = events.filter((e) => e.type === "retry" && /sha256/.test(e.reason)).map((e) => (e as { file: { relativeFileName: string } }).file.relativeFileName);
  assert.deepEqual(digestRetries.sort(), ["parts.bin", "single.bin"]);
  assert.deepEqual(digests(readTree(dest.path)), digests(expectedTree(files)));
});

test("a file that keeps failing is reported after every other file is done", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const files: FixtureFile[] = [
    { rank: 0, name: "a.bin", content: bytes(10_000) },
    { rank: 0, name: "broken.bin", content: bytes(10_000) },
    { rank: 0, name: "c.bin", content: bytes(10_000) },
  ];
  const job = await seedJob(server, files, { apiUrl: proxy.url });
  const broken = await server.blobPath(job.projectId, job.jobId, 0, "broken.bin");
  proxy.setRule((request) => (request.path === broken ? { kind: "respond", status: 500, body: JSON.stringify({ message: "disk on fire" }) } : { kind: "forward" }));
  const dest = tempDir();
  t.after(dest.remove);
  const summary = await downloadCheckpoint({ client: job.client, projectId: job.projectId, jobId: job.jobId, dest: dest.path, retry: { ...fastRetries, attempts: 3 } });

  assert.equal(summary.downloaded, 2);
  assert.deepEqual(
    summary.failed.map((f) => [f.file.localName, f.error]),
    [["rank-0/broken.bin", "HTTP 500: disk on fire"]],
  );
  assert.equal(proxy.requests().filter((r) => r.path === broken).length, 3);
  assert.deepEqual(digests(readTree(dest.path)), digests(expectedTree(files.filter((f) => f.name !== "broken.bin"))));
});

test("needs nothing beyond Baseten's API: no HEAD, no ckpt headers, no checkpoints endpoint", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const files: FixtureFile[] = [
    { rank: 0, name: "checkpoint-1/model.bin", content: bytes(2 * MiB + 7) },
    { rank: 0, name: "checkpoint-2/model.bin", content: bytes(2 * MiB + 9) },
    { rank: 0, name: "checkpoint-2/config.json", content: Buffer.from("{}") },
  ];
  const job = await seedJob(server, files, { apiUrl: proxy.url });
  proxy.resetStats();
  // Like S3 behind Baseten: a GET-signed URL refuses HEAD, and sends no x-ckpt-* header.
  proxy.setRule((request) => {
    if (request.method === "HEAD") return { kind: "respond", status: 403 };
    if (request.path.endsWith("/checkpoints")) return { kind: "respond", status: 404 };
    return { kind: "forward", dropHeaders: ["x-ckpt-sha256", "x-amz-meta-sha256"] };
  });
  const dest = tempDir();
  t.after(dest.remove);
  const events: DownloadEvent[] = [];
  const summary = await downloadCheckpoint({ client: job.client, projectId: job.projectId, jobId: job.jobId, dest: dest.path, checkpoint: "latest", partSize: MiB, onProgress: (e) => events.push(e) });

  assert.deepEqual(summary.failed, []);
  assert.deepEqual(digests(readTree(dest.path)), digests(expectedTree(files.filter((f) => f.name.startsWith("checkpoint-2/")))));
  assert.ok(events.filter((e) => e.type === "file-done").every((e) => e.type === "file-done" && e.verified === "size"));
  const apiCalls = proxy.requests().filter((r) => !proxy.isBlob(r.path));
  assert.ok(proxy.requests().every((r) => r.method === "GET"));
  assert.ok(apiCalls.every((r) => /\/checkpoint_files$|\/checkpoints$/.test(r.path)), JSON.stringify(apiCalls));
});

test("a hostile listing writes nothing outside the destination", async (t) => {
  const root = tempDir();
  t.after(root.remove);
  const dest = join(root.path, "dest");
  const outside = join(root.path, "outside");
  mkdirSync(join(dest, "rank-0"), { recursive: true });
  mkdirSync(outside);
  symlinkSync(outside, join(dest, "rank-0", "link"));
  const payload = Buffer.from("pwned");
  const api = await startFakeApi("p", "j", [
    { relative_file_name: "ok.txt", node_rank: 0, content: Buffer.from("fine") },
    { relative_file_name: "../escape.txt", node_rank: 0, content: payload },
    { relative_file_name: "../../outside/escape.txt", node_rank: 0, content: payload },
    { relative_file_name: "/tmp/absolute.txt", node_rank: 0, content: payload },
    { relative_file_name: "a/../../x.txt", node_rank: 0, content: payload },
    { relative_file_name: "link/pwned.txt", node_rank: 0, content: payload },
    { relative_file_name: "..\\windows.txt", node_rank: 0, content: payload },
    { relative_file_name: "evil.txt", node_rank: -1, content: payload },
    { relative_file_name: "evil.txt", node_rank: "0/../..", content: payload },
    { relative_file_name: ".", node_rank: 0, content: payload },
  ]);
  t.after(() => api.close());

  const summary = await downloadCheckpoint({ apiUrl: api.url, apiKey: "k", projectId: "p", jobId: "j", dest });

  assert.equal(summary.downloaded, 1);
  assert.equal(summary.failed.length, 9);
  assert.deepEqual(readdirSync(outside), []);
  assert.deepEqual(readdirSync(root.path).sort(), ["dest", "outside"]);
  assert.ok(lstatSync(join(dest, "rank-0", "link")).isSymbolicLink());
  assert.deepEqual([...readTree(dest).keys()].sort(), ["rank-0/ok.txt"]);
  assert.equal(api.blobRequests(), 1, "only the safe file should have been fetched");
});
