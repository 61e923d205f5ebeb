import assert from "node:assert/strict";
import { appendFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { runCli } from "../harness/server.js";
import { bytes, MiB, readTree, sha256, tempDir } from "./support/fixtures.js";
import { startFaultyServer, type Behaviour, type BlobRequest, type FaultyFile, type FaultyServer } from "./support/faulty-server.js";

/**
 * The transfer fault matrix: `ckpt download` (the real CLI, as a child process, so a crash shows
 * as a crash and not as a failed assertion in this process) against a server on raw sockets that
 * misbehaves for real (support/faulty-server.ts). Every fault ends in a retry that succeeds or a
 * clear per-file error with exit code 1 after the other files finished: never a crash, never a
 * wrong or partial file under its final name.
 */

const PROJECT = "proj";
const JOB = "job";

async function serve(t: TestContext, files: FaultyFile[], behaviour: (r: BlobRequest) => Behaviour): Promise<FaultyServer> {
  const server = await startFaultyServer({ projectId: PROJECT, jobId: JOB, files, behaviour });
  t.after(() => server.close());
  return server;
}

/**
 * Runs `ckpt download`. `slowWriter`: one libuv thread for every file write and sync, so the
 * client writes far slower than loopback delivers and holds its readers paused (backpressure)
 * most of the time, as on a slow disk.
 */
async function download(server: FaultyServer, out: string, extra: string[] = [], options: { slowWriter?: boolean } = {}) {
  return runCli(["download", "--project", PROJECT, "--job", JOB, "--out", out, "--quiet", "--retries", "4", ...extra], {
    env: { CKPT_API_URL: server.url, CKPT_API_KEY: "k", ...(options.slowWriter ? { UV_THREADPOOL_SIZE: "1" } : {}) },
  });
}

/** What the destination holds: name -> digest, partial-download state excluded. */
function landed(dir: string): Record<string, string> {
  if (!existsSync(dir)) return {};
  const tree = readTree(dir);
  return Object.fromEntries([...tree].filter(([name]) => !name.startsWith(".ckpt-download/")).map(([name, content]) => [name, sha256(content)]));
}

function expected(files: FaultyFile[]): Record<string, string> {
  return Object.fromEntries(files.map((f) => [`rank-${f.rank ?? 0}/${f.name}`, sha256(f.content)]));
}

function noCrash(result: { code: number | null; signal: NodeJS.Signals | null; stderr: string }): void {
  assert.equal(result.signal, null, result.stderr);
  assert.doesNotMatch(result.stderr, /AssertionError|ERR_ASSERTION|Uncaught|    at /, "the client crashed or printed a stack trace");
}

test("FIN mid-body while the client applies backpressure: retried from where the body stopped, no crash", async (t) => {
  // Bodies arrive far faster than the client writes them, so its reader is paused when the FIN
  // comes (undici 7 asserted on exactly this and killed the process).
  // One libuv thread (UV_THREADPOOL_SIZE=1) shared by every write and by the fsync of each of
  // 60 small files: the large files' writes queue behind those syncs, their readers stay paused
  // for tens of milliseconds, and meanwhile the server sends the rest of the body and its FIN.
  const large: FaultyFile[] = [0, 1, 2, 3].map((i) => ({ name: `shard-${i}.bin`, content: bytes(6 * MiB + i) }));
  const small: FaultyFile[] = Array.from({ length: 60 }, (_, i) => ({ name: `small/${i}.json`, content: bytes(2000 + i) }));
  const files = [...large, ...small];
  const server = await serve(t, files, (r) =>
    r.file.content.length < MiB ? { kind: "ok" } : r.nth <= 3 ? { kind: "fin-after", bytes: Math.floor((r.end - r.start + 1) * (0.3 * r.nth)) } : { kind: "ok" },
  );
  const out = tempDir();
  t.after(out.remove);

  const result = await download(server, out.path, ["--part-size", "64MiB"], { slowWriter: true });

  noCrash(result);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(landed(out.path), expected(files));
  // The retries asked for the rest of the body, not the whole file again.
  assert.ok(server.requests.some((r) => r.start > 0), "no request continued where a cut body stopped");
});

/**
 * One fault on one file among healthy ones: the CLI must end with the healthy files in place,
 * and either the faulty one too (after a retry) or a clear error naming it with exit code 1.
 */
async function faultCase(
  t: TestContext,
  behaviour: (r: BlobRequest, faulty: boolean) => Behaviour,
  options: { size?: number; extra?: string[]; files?: FaultyFile[] } = {},
) {
  const faulty: FaultyFile = { name: "faulty.bin", content: bytes(options.size ?? 3 * MiB + 17) };
  const healthy: FaultyFile[] = options.files ?? [
    { name: "a/model.bin", content: bytes(2 * MiB + 1) },
    { name: "a/config.json", content: Buffer.from('{"ok":true}') },
    { name: "b.bin", content: bytes(300_000), rank: 1 },
  ];
  const files = [faulty, ...healthy];
  const server = await serve(t, files, (r) => behaviour(r, r.file === faulty));
  const out = tempDir();
  t.after(out.remove);
  const result = await download(server, out.path, ["--part-size", "1MiB", ...(options.extra ?? [])]);
  noCrash(result);
  const tree = landed(out.path);
  const healthyLanded = Object.fromEntries(Object.entries(tree).filter(([name]) => name !== "rank-0/faulty.bin"));
  assert.deepEqual(healthyLanded, expected(healthy), "the healthy files must all be complete");
  const faultyLanded = tree["rank-0/faulty.bin"];
  if (faultyLanded !== undefined) assert.equal(faultyLanded, sha256(faulty.content), "a wrong file landed under its final name");
  return { result, server, faultyLanded: faultyLanded !== undefined, out: out.path };
}

function failedClearly(result: { code: number | null; stderr: string }, reason: RegExp): void {
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /1 of 4 files failed/);
  assert.match(result.stderr, new RegExp(`rank-0/faulty\\.bin: .*${reason.source}`));
  assert.doesNotMatch(result.stderr, /sig=secret/, "a presigned URL was printed");
}

test("RST mid-body is retried from where the body stopped", async (t) => {
  const { result, server, faultyLanded } = await faultCase(t, (r, faulty) => (faulty && r.nth <= 2 ? { kind: "rst-after", bytes: 300_000 } : { kind: "ok" }));
  assert.equal(result.code, 0, result.stderr);
  assert.ok(faultyLanded);
  assert.ok(server.requests.some((r) => r.file.name === "faulty.bin" && r.start % MiB !== 0), "the retry did not continue mid-part");
});

test("a body that stalls forever hits the idle timeout and is retried", async (t) => {
  const { result, faultyLanded } = await faultCase(t, (r, faulty) => (faulty && r.nth === 1 ? { kind: "stall-after", bytes: 100_000 } : { kind: "ok" }), {
    extra: ["--idle-timeout", "1"],
  });
  assert.equal(result.code, 0, result.stderr);
  assert.ok(faultyLanded);
});

test("a body that stalls on every try ends in a clear error after the other files finished", async (t) => {
  const { result, faultyLanded } = await faultCase(t, (_r, faulty) => (faulty ? { kind: "stall-after", bytes: 0 } : { kind: "ok" }), {
    size: 200_000,
    extra: ["--idle-timeout", "1", "--retries", "2"],
  });
  assert.equal(faultyLanded, false);
  failedClearly(result, /no data for 1 s/);
});

test("a listing that stalls mid-body hits the idle timeout and is asked again; one that always stalls is a clear error", async (t) => {
  const files: FaultyFile[] = [{ name: "checkpoint-1/a.bin", content: bytes(300_000) }];
  const server = await serve(t, files, () => ({ kind: "ok" }));
  server.setListing((nth) => (nth === 1 ? "stall-mid-body" : "ok"));
  const out = tempDir("stalled-listing");
  t.after(() => out.remove());
  const once = await download(server, out.path, ["--idle-timeout", "1"]);
  noCrash(once);
  assert.equal(once.code, 0, once.stderr);
  assert.ok(server.listings() >= 2, `${server.listings()} listing requests`);
  assert.deepEqual(landed(out.path), expected(files));

  server.setListing(() => "stall-mid-body");
  const never = tempDir("stalled-listing-always");
  t.after(() => never.remove());
  const always = await download(server, never.path, ["--idle-timeout", "1", "--retries", "2"]);
  noCrash(always);
  assert.equal(always.code, 1);
  assert.match(always.stderr, /^ckpt: GET \/v1\/training_projects\/proj\/jobs\/job\/checkpoint_files.*: fetch failed \(ETIMEDOUT\)\n$/m);
  assert.deepEqual(landed(never.path), {});
});

test("a body shorter than its Content-Length (FIN) is retried; longer than asked is refused and retried", async (t) => {
  await t.test("short", async (t) => {
    const { result, faultyLanded } = await faultCase(t, (r, faulty) => (faulty && r.nth <= 3 ? { kind: "fin-after", bytes: 1000 * r.nth } : { kind: "ok" }));
    assert.equal(result.code, 0, result.stderr);
    assert.ok(faultyLanded);
  });
  await t.test("long, every time: a clear error, nothing under the final name", async (t) => {
    const { result, faultyLanded } = await faultCase(t, (_r, faulty) => (faulty ? { kind: "long", extra: 5000 } : { kind: "ok" }), { extra: ["--retries", "2"] });
    // Extra bytes after a complete body are never written; what they do to the next response
    // on that connection (a parse error) is retried. The file may complete or fail, but only whole.
    assert.ok(result.code === 0 ? faultyLanded : !faultyLanded, result.stderr);
  });
});

test("a 200 with the whole file in answer to a Range request: the file is fetched in one piece", async (t) => {
  const { result, faultyLanded, server } = await faultCase(t, (r, faulty) => (faulty && r.ranged && r.start > 0 ? { kind: "ignore-range" } : { kind: "ok" }));
  assert.equal(result.code, 0, result.stderr);
  assert.ok(faultyLanded);
  assert.ok(server.requests.some((r) => r.file.name === "faulty.bin" && r.start === 0 && r.end === r.file.content.length - 1));
});

test("a 206 whose Content-Range is not the range asked for is never written; retried, then a clear error", async (t) => {
  const { result, faultyLanded } = await faultCase(t, (r, faulty) => (faulty && r.start > 0 ? { kind: "wrong-range", shift: 4096 } : { kind: "ok" }), {
    extra: ["--retries", "2"],
  });
  assert.equal(faultyLanded, false);
  failedClearly(result, /asked for bytes [0-9]+-[0-9]+, got [0-9]+-[0-9]+/);
});

test("302 and 307 redirects to another host are followed; a redirect loop is a clear error", async (t) => {
  const files: FaultyFile[] = [{ name: "moved.bin", content: bytes(2 * MiB + 3) }];
  // The other host: a second server on another loopback address serving the same bytes.
  const other = await startFaultyServer({ projectId: PROJECT, jobId: JOB, files, host: "127.0.0.2" });
  t.after(() => other.close());
  const server = await serve(t, files, (r) => ({ kind: "redirect", status: r.nth % 2 ? 302 : 307, location: `${other.url}/blob/0?sig=other` }));
  const out = tempDir();
  t.after(out.remove);
  const ok = await download(server, out.path, ["--part-size", "1MiB"]);
  noCrash(ok);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(landed(out.path), expected(files));
  assert.equal(other.requests.length, 3, "each of the three parts went to the other host");

  const loop = await serve(t, files, () => ({ kind: "redirect", status: 302, location: "/blob/0?again" }));
  const out2 = tempDir();
  t.after(out2.remove);
  const looped = await download(loop, out2.path, ["--retries", "2"]);
  noCrash(looped);
  assert.equal(looped.code, 1);
  assert.match(looped.stderr, /rank-0\/moved\.bin: more than 5 redirects/);
  assert.deepEqual(landed(out2.path), {});
});

test("403 for an expired URL is cured by a re-list; a forbidden 403 fails that file fast", async (t) => {
  await t.test("expired", async (t) => {
    const { result, faultyLanded, server } = await faultCase(t, (r, faulty) =>
      faulty && r.urlGeneration === 0
        ? { kind: "status", status: 403, body: "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>" }
        : { kind: "ok" },
    );
    assert.equal(result.code, 0, result.stderr);
    assert.ok(faultyLanded);
    assert.equal(server.listings(), 2, "one listing, then one shared re-list");
  });
  await t.test("forbidden", async (t) => {
    const { result, faultyLanded, server } = await faultCase(t, (_r, faulty) =>
      faulty ? { kind: "status", status: 403, body: "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>" } : { kind: "ok" },
    );
    assert.equal(faultyLanded, false);
    failedClearly(result, /HTTP 403: Access Denied/);
    assert.ok(server.listings() <= 2, `${server.listings()} listings for one forbidden file`);
  });
});

test("404 for a file deleted mid-download: a clear error for that file, the others complete", async (t) => {
  const { result, faultyLanded } = await faultCase(t, (r, faulty) =>
    faulty && (r.start > 0 || r.nth > 1) ? { kind: "status", status: 404, body: "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>" } : { kind: "ok" },
  );
  assert.equal(faultyLanded, false);
  failedClearly(result, /HTTP 404: The specified key does not exist/);
});

test("malformed and enormous response headers: retried, then a clear error; no crash", async (t) => {
  await t.test("malformed", async (t) => {
    const { result, faultyLanded } = await faultCase(t, (_r, faulty) => (faulty ? { kind: "malformed-headers" } : { kind: "ok" }), { size: 1000, extra: ["--retries", "2"] });
    assert.equal(faultyLanded, false);
    failedClearly(result, /malformed response/);
  });
  await t.test("enormous", async (t) => {
    const { result, faultyLanded } = await faultCase(t, (_r, faulty) => (faulty ? { kind: "huge-headers", bytes: 1 << 20 } : { kind: "ok" }), { size: 1000, extra: ["--retries", "2"] });
    assert.equal(faultyLanded, false);
    failedClearly(result, /response headers exceed 32 KiB/);
  });
});

test("an endless body is cut at the bytes asked for: a clear error, bounded memory", async (t) => {
  const { result, faultyLanded } = await faultCase(t, (_r, faulty) => (faulty ? { kind: "endless" } : { kind: "ok" }), { size: 3 * MiB, extra: ["--retries", "2"] });
  assert.equal(faultyLanded, false);
  // A 200 to a ranged request starts the file over in one piece; the endless 200 then sends more than the file.
  failedClearly(result, /more bytes than requested|ignored the Range header/);
});

test("with no digest announced (Baseten's listing) the manifest records sizes only and ckpt verify checks them; --hash records every file's digest, and a later run keeps it", async (t) => {
  const announced = bytes(70_000);
  const files: FaultyFile[] = [
    { name: "a.bin", content: bytes(3 * MiB) },
    { name: "b.json", content: bytes(500) },
    { name: "announced.bin", content: announced, sha256: sha256(announced) },
  ];
  const server = await serve(t, files, () => ({ kind: "ok" }));
  const out = tempDir();
  t.after(out.remove);
  const manifestOf = (dir: string) =>
    Object.fromEntries(
      (JSON.parse(readFileSync(join(dir, ".ckpt-download", "manifest.json"), "utf8")).files as { local_path: string; sha256: string | null }[]).map((f) => [f.local_path, f.sha256]),
    );
  const sizesOnly = { "rank-0/a.bin": null, "rank-0/b.json": null, "rank-0/announced.bin": sha256(files[2]!.content) };

  const fast = join(out.path, "fast");
  const run = await download(server, fast);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(landed(fast), expected(files));
  // The announced digest is checked and recorded; the others are unknown, not guessed.
  assert.deepEqual(manifestOf(fast), sizesOnly);
  const verify = await runCli(["verify", fast]);
  assert.equal(verify.code, 0, verify.stderr);
  assert.match(verify.stdout, /3 of 3 files verified \(2 by size only: no digest was announced; ckpt download --hash records one\)/);
  appendFileSync(join(fast, "rank-0", "b.json"), "!");
  const changed = await runCli(["verify", fast, "-o", "json"]);
  assert.equal(changed.code, 1);
  assert.deepEqual(JSON.parse(changed.stdout).changed, [{ path: "rank-0/b.json", reason: "size 501, expected 500" }]);

  // --no-hash, the old spelling of the default, is still accepted.
  const old = join(out.path, "old");
  const oldRun = await download(server, old, ["--no-hash"]);
  assert.equal(oldRun.code, 0, oldRun.stderr);
  assert.deepEqual(manifestOf(old), sizesOnly);

  const hashed = join(out.path, "hashed");
  const first = await download(server, hashed, ["--hash"]);
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual(manifestOf(hashed), expected(files));
  // A run without --hash skips the complete files and keeps the digests recorded for them.
  const again = await download(server, hashed);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(manifestOf(hashed), expected(files));
  const tampered = Buffer.from(files[0]!.content);
  tampered[17] = tampered[17]! ^ 1;
  writeFileSync(join(hashed, "rank-0", "a.bin"), tampered);
  const caught = await runCli(["verify", hashed, "-o", "json"]);
  assert.equal(caught.code, 1);
  assert.equal(JSON.parse(caught.stdout).changed[0].path, "rank-0/a.bin");
});
