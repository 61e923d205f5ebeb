import assert from "node:assert/strict";
import { appendFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { runCli, startTestServer } from "../harness/server.js";
import { putFile, seedJob, tempDir, type FixtureFile } from "../client/support/fixtures.js";
import { hfTrainerCheckpoint, shardedSafetensors } from "../helpers/frameworks.js";

/** The CLI around checkpoints as objects, against a real server: download refusal, manifest and verify, aliases, retention. */
test("ckpt download refuses what is not COMPLETE, writes a manifest, ckpt verify checks it; @alias across jobs; retention", async (t) => {
  const server = await startTestServer();
  t.after(() => server.stop());
  const done: FixtureFile[] = hfTrainerCheckpoint(100, 0.5, { step: 100, metric: 0.5 }).map((f) => ({ rank: 0, name: f.name, content: f.content }));
  const { shards, index } = shardedSafetensors("merged");
  const writing: FixtureFile[] = [index, shards[0]!].map((f) => ({ rank: 0, name: f.name, content: f.content }));
  const job = await seedJob(server, [...done, ...writing]);
  const env = { CKPT_API_URL: server.baseUrl, CKPT_API_KEY: job.apiKey };
  const ckpt = (...args: string[]) => runCli(args, { env });
  const out = tempDir();
  t.after(out.remove);

  const refused = await ckpt("download", "--project", job.projectName, "--checkpoint", "merged", "--out", join(out.path, "m"));
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /checkpoint merged of job \w+ is still WRITING/);
  assert.match(refused.stderr, /missing \(named by merged\/model\.safetensors\.index\.json, rank 0\): merged\/model-00002-of-00002\.safetensors/);
  assert.match(refused.stderr, /--allow-partial/);
  const partial = await ckpt("download", "--project", job.projectName, "--checkpoint", "merged", "--allow-partial", "--quiet", "--out", join(out.path, "m"));
  assert.equal(partial.code, 0, partial.stderr);

  // `latest` is the newest COMPLETE checkpoint: checkpoint-100, not the newer merged.
  const dest = join(out.path, "latest");
  const latest = await ckpt("download", "--project", job.projectName, "--checkpoint", "latest", "--quiet", "--out", dest);
  assert.equal(latest.code, 0, latest.stderr);
  const manifest = JSON.parse(readFileSync(join(dest, ".ckpt-download", "manifest.json"), "utf8"));
  assert.deepEqual([manifest.checkpoint_id, manifest.state, manifest.files.length], ["checkpoint-100", "COMPLETE", done.length]);
  assert.ok(manifest.files.every((f: any) => /^[0-9a-f]{64}$/.test(f.sha256) && f.local_path.startsWith("rank-0/checkpoint-100/")));

  const ok = await ckpt("verify", dest);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`${done.length} of ${done.length} files verified`));
  appendFileSync(join(dest, "rank-0/checkpoint-100/config.json"), " ");
  rmSync(join(dest, "rank-0/checkpoint-100/scheduler.pt"));
  writeFileSync(join(dest, "rank-0/checkpoint-100/stray.txt"), "?");
  const bad = await ckpt("verify", dest, "--json");
  assert.equal(bad.code, 1);
  const report = JSON.parse(bad.stdout);
  assert.deepEqual(report.missing, ["rank-0/checkpoint-100/scheduler.pt"]);
  assert.deepEqual(report.changed.map((c: any) => c.path), ["rank-0/checkpoint-100/config.json"]);
  assert.deepEqual(report.extra, ["rank-0/checkpoint-100/stray.txt"]);
  assert.equal((await ckpt("verify", join(out.path, "nowhere"))).code, 1);

  // An alias on the first job, then a newer job: @prod still finds its checkpoint with no --job.
  const set = await ckpt("alias", "set", "prod", "--project", job.projectName, "--checkpoint", "checkpoint-100");
  assert.equal(set.code, 0, set.stderr);
  const newer = await job.client.createJob(job.projectId, { name: "run-2" });
  await putFile(server, job.apiKey, job.projectId, newer.id, { rank: 0, name: "checkpoint-1/COMPLETE", content: Buffer.alloc(0) });
  const viaAlias = await ckpt("download", "--project", job.projectName, "--checkpoint", "@prod", "--quiet", "--out", join(out.path, "prod"));
  assert.equal(viaAlias.code, 0, viaAlias.stderr);
  assert.equal(JSON.parse(readFileSync(join(out.path, "prod", ".ckpt-download", "manifest.json"), "utf8")).training_job_id, job.jobId);
  const aliases = JSON.parse((await ckpt("alias", "ls", "--project", job.projectName, "-o", "json")).stdout);
  assert.deepEqual(aliases.map((a: any) => [a.name, a.checkpoint_id]), [["prod", "checkpoint-100"]]);
  assert.equal((await ckpt("alias", "set", "prod", "--project", job.projectName, "--job", newer.id, "--checkpoint", "checkpoint-1")).code, 0);
  const history = JSON.parse((await ckpt("alias", "history", "prod", "--project", job.projectName, "-o", "json")).stdout);
  assert.deepEqual(history.map((h: any) => h.training_job_id), [job.jobId, newer.id]);
  assert.equal((await ckpt("alias", "rm", "prod", "--project", job.projectName)).code, 0);
  assert.equal((await ckpt("download", "--project", job.projectName, "--checkpoint", "@prod", "--out", join(out.path, "x"))).code, 1);

  // Listing, pin, complete.
  const listed = JSON.parse((await ckpt("checkpoints", "--project", job.projectName, "--job", job.jobId, "-o", "json")).stdout);
  assert.deepEqual(listed.map((c: any) => [c.checkpoint_id, c.state, c.aliases]), [["checkpoint-100", "COMPLETE", ["best"]], ["merged", "WRITING", []]]);
  assert.equal((await ckpt("checkpoints", "complete", "merged", "--project", job.projectName, "--job", job.jobId)).code, 0);
  assert.equal((await ckpt("checkpoints", "pin", "@best", "--project", job.projectName, "--job", job.jobId)).code, 0);
  const table = await ckpt("checkpoints", "--project", job.projectName, "--job", job.jobId);
  assert.match(table.stdout, /^CHECKPOINT +STATE +TYPE +SIZE +FILES +ALIASES +PINNED +CREATED\ncheckpoint-100 +COMPLETE +full +\S+ \S+ +7 +@best +yes /);

  // Retention: keep-last 1 would delete checkpoint-100 but it is pinned; unpinned, it goes.
  assert.equal((await ckpt("retention", "set", "--project", job.projectName, "--keep-last", "1", "--max-age", "bogus")).code, 1);
  assert.equal((await ckpt("retention", "set", "--project", job.projectName, "--keep-last", "1")).code, 0);
  const shown = JSON.parse((await ckpt("retention", "show", "--project", job.projectName, "-o", "json")).stdout);
  assert.equal(shown.keep_last, 1);
  assert.deepEqual(JSON.parse((await ckpt("retention", "plan", "--project", job.projectName, "-o", "json")).stdout).delete, []);
  assert.equal((await ckpt("checkpoints", "unpin", "checkpoint-100", "--project", job.projectName, "--job", job.jobId)).code, 0);
  const plan = JSON.parse((await ckpt("retention", "plan", "--project", job.projectName, "-o", "json")).stdout);
  assert.deepEqual(plan.delete.map((c: any) => c.checkpoint_id), []);
  assert.ok(plan.keep.find((k: any) => k.checkpoint_id === "checkpoint-100").reasons.includes("aliased"), "@best keeps it");
});
