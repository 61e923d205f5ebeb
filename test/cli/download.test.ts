import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { CLI_PATH, runCli } from "../harness/server.js";
import { bytes, expectedTree, MiB, readTree, seedJob, sha256, tempDir, type FixtureFile } from "../client/support/fixtures.js";
import { startProxiedServer } from "../client/support/proxied-server.js";

/** The downloaded files, without the manifest the CLI writes in the state folder (which must be there). */
function downloaded(dir: string): Map<string, Buffer> {
  const tree = readTree(dir);
  assert.ok(tree.delete(".ckpt-download/manifest.json"), `no manifest in ${dir}`);
  return tree;
}

function digests(tree: Map<string, Buffer>): Record<string, string> {
  return Object.fromEntries([...tree].sort(([a], [b]) => a.localeCompare(b)).map(([name, content]) => [name, sha256(content)]));
}

test("ckpt download: rank layout, JSON events, selection with --flat, dry run; a second run skips everything", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const files: FixtureFile[] = [
    { rank: 0, name: "checkpoint-5/model.bin", content: bytes(3 * MiB + 3) },
    { rank: 0, name: "checkpoint-5/nested/config.json", content: Buffer.from('{"a":1}') },
    { rank: 1, name: "checkpoint-5/model.bin", content: bytes(MiB) },
    { rank: 1, name: "checkpoint-5/empty.txt", content: Buffer.alloc(0) },
  ];
  const job = await seedJob(server, files, { apiUrl: proxy.url });
  const env = { CKPT_API_URL: proxy.url, CKPT_API_KEY: job.apiKey };
  const out = tempDir();
  t.after(out.remove);
  const ckpt = (...args: string[]) => runCli(["download", "--project", job.projectName, ...args], { env });
  const noSecrets = (text: string): void => {
    assert.ok(!text.includes(job.apiKey), "the API key was printed");
    assert.ok(!/X-Ckpt-Signature|\/blobs\//.test(text), "a presigned URL was printed");
  };

  const all = await ckpt("--out", join(out.path, "all"), "--json", "--part-size", "1MiB");
  assert.equal(all.code, 0, all.stderr);
  noSecrets(all.stdout + all.stderr);
  const events = all.stdout.trim().split("\n").map((line) => JSON.parse(line) as { type: string; downloaded?: number });
  assert.equal(events[0]!.type, "planned");
  assert.equal(events.filter((e) => e.type === "file-done").length, files.length);
  assert.deepEqual(events.at(-1), { ...events.at(-1), type: "summary", downloaded: files.length });
  assert.deepEqual(digests(downloaded(join(out.path, "all"))), digests(expectedTree(files)));

  const again = await ckpt("--out", join(out.path, "all"));
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /downloaded 0 files .* 4 already complete/);

  const flat = await ckpt("--out", join(out.path, "flat"), "--rank", "1", "--flat", "--include", "*.bin", "--quiet");
  assert.equal(flat.code, 0, flat.stderr);
  assert.equal(flat.stdout + flat.stderr, "");
  assert.deepEqual([...downloaded(join(out.path, "flat")).keys()], ["checkpoint-5/model.bin"]);

  const dry = await ckpt("--out", join(out.path, "dry"), "--dry-run");
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^ACTION +RANK +SIZE +PATH\ndownload +0 +3\.0 MiB +rank-0\/checkpoint-5\/model\.bin\n/);
  assert.equal(existsSync(join(out.path, "dry")), false);

  const twoRanksFlat = await ckpt("--out", join(out.path, "bad"), "--flat");
  assert.equal(twoRanksFlat.code, 1);
  assert.match(twoRanksFlat.stderr, /^ckpt: flat layout needs a single node rank/);

  const nothing = await ckpt("--out", join(out.path, "none"), "--include", "*.nothing");
  assert.equal(nothing.code, 1);
  assert.match(nothing.stderr, /nothing to download/);
});

test("ckpt download stopped by Ctrl-C, then killed with SIGKILL, resumes without fetching completed parts again", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const files: FixtureFile[] = [{ rank: 0, name: "model.safetensors", content: bytes(8 * MiB) }];
  const job = await seedJob(server, files, { apiUrl: proxy.url });
  const out = tempDir();
  t.after(out.remove);
  const args = ["download", "--project", job.projectId, "--job", job.jobId, "--out", out.path, "--part-size", "1MiB", "--parts-per-file", "2", "--concurrency", "2"];
  const env = { PATH: process.env.PATH, CKPT_API_URL: proxy.url, CKPT_API_KEY: job.apiKey };

  /**
   * Runs the CLI until `parts` parts are recorded, then sends `signal`. The proxy holds every
   * byte after `stallAt`, so the run cannot finish first: with two 1 MiB parts in flight,
   * `stallAt - 2 MiB` worth of parts complete before it stalls.
   */
  const interruptAfter = async (parts: number, stallAt: number, signal: NodeJS.Signals) => {
    proxy.resetStats();
    proxy.stallAfterBlobBytes(stallAt);
    const child = spawn(process.execPath, [CLI_PATH, ...args, "--json"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("close", (code, sig) => resolve({ code, signal: sig })));
    let partsDone = 0;
    for await (const line of createInterface({ input: child.stdout! })) {
      if ((JSON.parse(line) as { type: string }).type === "part-done" && ++partsDone === parts) break;
    }
    child.kill(signal);
    return { ...(await exited), partsDone, stderr };
  };

  // Two parts or more done (of eight), four at most: the next run has at least 4 MiB to go.
  const interrupted = await interruptAfter(2, 4 * MiB, "SIGINT");
  assert.equal(interrupted.partsDone, 2, "the download ended before two parts were recorded");
  assert.equal(interrupted.code, 130);
  assert.match(interrupted.stderr, /interrupted: run the same command again to resume/);

  // At least one more part done, and less than the 4 MiB left is let through.
  const killed = await interruptAfter(1, 3 * MiB, "SIGKILL");
  assert.equal(killed.signal, "SIGKILL");

  proxy.stallAfterBlobBytes(null);
  proxy.resetStats();
  const resumed = await runCli(args, { env });
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /1 to download \([0-5]\.0 MiB to fetch\)/);
  assert.ok(proxy.blobBytes() <= 5 * MiB, `the last run fetched ${proxy.blobBytes()} bytes of an 8 MiB file with at least 3 MiB done`);
  assert.deepEqual(digests(downloaded(out.path)), digests(expectedTree(files)));
});

test("ckpt download: a file that keeps failing is reported on stderr with exit code 1, after the others completed", async (t) => {
  const { server, proxy } = await startProxiedServer(t);
  const files: FixtureFile[] = [
    { rank: 0, name: "good-1.bin", content: bytes(1000) },
    { rank: 0, name: "bad.bin", content: bytes(1000) },
    { rank: 0, name: "good-2.bin", content: bytes(1000) },
  ];
  const job = await seedJob(server, files, { apiUrl: proxy.url });
  proxy.setRule((request) => (request.path.endsWith("/bad.bin") ? { kind: "respond", status: 503 } : { kind: "forward" }));
  const out = tempDir();
  t.after(out.remove);

  const result = await runCli(["download", "--project", job.projectName, "--out", out.path, "--retries", "2"], {
    env: { CKPT_API_URL: proxy.url, CKPT_API_KEY: job.apiKey },
  });

  assert.equal(result.code, 1);
  assert.match(result.stderr, /ckpt: 1 of 3 files failed:\n {2}rank-0\/bad\.bin: HTTP 503/);
  assert.match(result.stderr, /the other files are complete/);
  assert.deepEqual(digests(readTree(out.path)), digests(expectedTree(files.filter((f) => f.name !== "bad.bin"))), "no manifest for a download that failed");
});
