import assert from "node:assert/strict";
import { test } from "node:test";
import { runCli, startTestServer } from "../harness/server.js";
import { putFile, MiB, bytes } from "../client/support/fixtures.js";
import { startApiCountingProxy } from "../sync/support.js";

test("projects create and jobs create print ids; projects, jobs, checkpoints and ls list them", async (t) => {
  const server = await startTestServer();
  t.after(() => server.stop());
  const key = await server.createKey("org");
  const env = { CKPT_API_URL: server.baseUrl, CKPT_API_KEY: key };
  const ckpt = async (...args: string[]): Promise<string> => {
    const result = await runCli(args, { env });
    assert.equal(result.code, 0, `ckpt ${args.join(" ")}: ${result.stderr}`);
    assert.ok(!(result.stdout + result.stderr).includes(key), "the API key must never be printed");
    return result.stdout;
  };

  const projectId = (await ckpt("projects", "create", "llama")).trim();
  assert.match(projectId, /^[a-z0-9]+$/);
  const firstJob = (await ckpt("jobs", "create", "--project", "llama", "--name", "first")).trim();
  const latestJob = (await ckpt("jobs", "create", "--project", projectId)).trim();
  await putFile(server, key, projectId, latestJob, { rank: 0, name: "checkpoint-10/model.bin", content: bytes(2 * MiB) });
  await putFile(server, key, projectId, latestJob, { rank: 1, name: "checkpoint-10/model.bin", content: bytes(MiB) });
  await putFile(server, key, projectId, latestJob, { rank: 0, name: "checkpoint-20/config.json", content: Buffer.from("{}") });

  const projects = JSON.parse(await ckpt("projects", "-o", "json")) as { id: string; name: string }[];
  assert.deepEqual(projects.map((p) => [p.id, p.name]), [[projectId, "llama"]]);
  assert.match(await ckpt("projects"), new RegExp(`^ID +NAME +LATEST JOB +UPDATED\\n${projectId} +llama +${latestJob} `));

  const jobs = JSON.parse(await ckpt("jobs", "--project", "llama", "-o", "json")) as { id: string; name: string | null }[];
  assert.deepEqual(jobs.map((j) => [j.id, j.name]), [[latestJob, null], [firstJob, "first"]]);

  // --job defaults to the project's latest job.
  const checkpoints = await ckpt("checkpoints", "--project", "llama");
  assert.match(checkpoints, /^CHECKPOINT +STATE +TYPE +SIZE +FILES +ALIASES +PINNED +CREATED\ncheckpoint-10 +WRITING +full +3\.0 MiB +\d+ +- +- .*\ncheckpoint-20 +WRITING +full +2 B +1 +- +- /);

  const table = await ckpt("ls", "--project", "llama");
  assert.match(table, /^RANK +NAME +SIZE +MODIFIED\n0 +checkpoint-10\/model\.bin +2\.0 MiB +\S+\n1 +checkpoint-10\/model\.bin +1\.0 MiB +\S+\n0 +checkpoint-20\/config\.json +2 B +\S+\n$/);
  assert.ok(!table.includes("http"), "URLs only when asked for");

  const listed = JSON.parse(await ckpt("ls", "--project", projectId, "--job", latestJob, "-o", "json", "--rank", "0")) as Record<string, unknown>[];
  assert.deepEqual(listed.map((f) => [f.node_rank, f.relative_file_name, f.size_bytes, "url" in f]), [
    [0, "checkpoint-10/model.bin", 2 * MiB, false],
    [0, "checkpoint-20/config.json", 2, false],
  ]);
  const streamed = (await ckpt("ls", "--project", "llama", "-o", "jsonl", "--urls", "--checkpoint", "latest"))
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as { relative_file_name: string; url: string });
  assert.deepEqual(streamed.map((f) => f.relative_file_name), ["checkpoint-20/config.json"]);
  assert.ok(streamed[0]!.url.startsWith(server.blobOrigin + server.blobPathPrefix), streamed[0]!.url);

  // With ids for both, the listing is the one request; a project name, or an unknown job, costs
  // the lookups (and answers the same).
  const proxy = await startApiCountingProxy(t, server.baseUrl);
  const counted = (...args: string[]) => runCli(args, { env: { ...env, CKPT_API_URL: proxy.url } });
  const byIds = await counted("ls", "--project", projectId, "--job", latestJob, "-o", "json");
  assert.equal(byIds.code, 0, byIds.stderr);
  assert.equal((JSON.parse(byIds.stdout) as unknown[]).length, 3);
  assert.deepEqual(proxy.requests().map((r) => r.path), [`/v1/training_projects/${projectId}/jobs/${latestJob}/checkpoint_files`]);
  const byName = await counted("ls", "--project", "llama", "--job", latestJob, "-o", "json");
  assert.equal(byName.stdout, byIds.stdout, byName.stderr);
  const unknownJob = await counted("ls", "--project", projectId, "--job", "nojob");
  assert.equal(unknownJob.code, 1);
  assert.match(unknownJob.stderr, /not found/);
  assert.equal(unknownJob.stdout, "");

  const fetched = await fetch(streamed[0]!.url);
  assert.equal(fetched.status, 200);
  assert.equal((await fetched.arrayBuffer()).byteLength, 2);
});

test("remote commands: errors on stderr with a non-zero exit; BASETEN_API_KEY is the key of last resort", async (t) => {
  const server = await startTestServer();
  t.after(() => server.stop());
  const key = await server.createKey("org");

  const unknown = await runCli(["ls", "--project", "nope"], { env: { CKPT_API_URL: server.baseUrl, CKPT_API_KEY: key } });
  assert.equal(unknown.code, 1);
  assert.equal(unknown.stdout, "");
  assert.match(unknown.stderr, /^ckpt: no training project with id or name 'nope'/);

  const keyless = await runCli(["projects"], { env: { CKPT_API_URL: server.baseUrl } });
  assert.equal(keyless.code, 1);
  assert.match(keyless.stderr, /no API key/);

  const baseten = await runCli(["projects", "-o", "json"], { env: { CKPT_API_URL: server.baseUrl, BASETEN_API_KEY: key } });
  assert.equal(baseten.code, 0, baseten.stderr);
  assert.deepEqual(JSON.parse(baseten.stdout), []);
});
