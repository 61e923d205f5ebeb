import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { CLI_PATH, startTestServer } from "../harness/server.js";
import { CONSOLE_CSP } from "../../src/server/routes/console.js";
import { chromiumOrSkip, openBrowser } from "./browser.js";
import { ckpt, DOCS_DIR, safetensors, writeFiles } from "./fixtures.js";

const HOSTILE_FILE = "<img src=x onerror=alert(1)>.bin";
const HOSTILE_FILE_2 = `"><svg onload=alert(2)>.txt`;
const HOSTILE_PROJECT = "<img src=x onerror=alert(3)> vision";
const HOSTILE_JOB = `"><b onmouseover=alert(4)>run-1</b>`;

test("web console: sign in, walk every page, copy and run the download command, hostile names as text, sign out", async (t) => {
  if (!chromiumOrSkip(t)) return;
  const server = await startTestServer();
  t.after(() => server.stop());
  const key = await server.createKey("console-org");
  const env = { CKPT_API_URL: server.baseUrl, CKPT_API_KEY: key };
  const work = mkdtempSync(join(tmpdir(), "ckpt-console-"));
  t.after(() => rmSync(work, { recursive: true, force: true }));

  // Data pushed by the CLI, as a person would.
  const projectId = await ckpt(env, "projects", "create", HOSTILE_PROJECT);
  const jobId = await ckpt(env, "jobs", "create", "--project", projectId, "--name", HOSTILE_JOB);
  const model = safetensors([
    { name: "model.embed_tokens.weight", dtype: "BF16", shape: [32, 16] },
    { name: "model.layers.0.self_attn.q_proj.weight", dtype: "BF16", shape: [16, 16] },
    { name: "lm_head.weight", dtype: "F32", shape: [32, 16] },
  ]);
  const rank0 = join(work, "rank0");
  writeFiles(rank0, {
    "checkpoint-100/model.safetensors": model,
    "checkpoint-100/config.json": '{"hidden_size":16}',
    "checkpoint-100/optimizer/deep/state.bin": Buffer.alloc(4096, 1),
    "checkpoint-200/model.safetensors": model,
    [`checkpoint-200/${HOSTILE_FILE}`]: "hostile 1",
    [`checkpoint-200/${HOSTILE_FILE_2}`]: "hostile 2",
  });
  await ckpt(env, "push", "--project", projectId, "--job", jobId, "--node-rank", "0", rank0);
  const rank1 = join(work, "rank1");
  writeFiles(rank1, { "checkpoint-100/model.safetensors": model });
  await ckpt(env, "push", "--project", projectId, "--job", jobId, "--node-rank", "1", rank1);

  const b = await openBrowser(server.baseUrl);
  t.after(() => b.close());
  const { page } = b;
  mkdirSync(DOCS_DIR, { recursive: true });

  // The console's document: its own strict CSP; the API keeps its headers.
  const doc = await page.goto(`${server.baseUrl}/console/`);
  assert.equal(doc?.status(), 200);
  const csp = doc!.headers()["content-security-policy"]!;
  assert.equal(csp, CONSOLE_CSP);
  for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) assert.ok(csp.includes(directive), directive);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:|\*/);
  assert.equal(doc!.headers()["x-frame-options"], "DENY");
  const apiHeaders = (await fetch(`${server.baseUrl}/v1/training_projects`, { headers: { authorization: `Api-Key ${key}` } })).headers;
  assert.equal(apiHeaders.get("content-security-policy"), "default-src 'none'; frame-ancestors 'none'");
  assert.equal(apiHeaders.get("cache-control"), "no-store");
  // /console redirects; an unknown asset is a JSON 404; any other page path is the app.
  assert.equal((await fetch(`${server.baseUrl}/console`, { redirect: "manual" })).headers.get("location"), "/console/");
  assert.equal((await fetch(`${server.baseUrl}/console/assets/nope.js`)).status, 404);
  assert.match(await (await fetch(`${server.baseUrl}/console/projects/x/jobs/y`)).text(), /<main id="main"/);

  // Sign-in: a wrong key is refused on the form; the right one opens the projects.
  const keyInput = page.getByLabel("API key");
  await keyInput.fill("ckpt_wrong_key");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("That API key was refused.").waitFor();
  await keyInput.fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Projects" }).waitFor();
  assert.equal(await page.evaluate("sessionStorage.getItem('ckpt.console.apiKey')"), key);
  assert.equal(await page.evaluate("localStorage.length"), 0);
  const projectLink = page.getByRole("link", { name: HOSTILE_PROJECT });
  await projectLink.waitFor();
  await page.screenshot({ path: join(DOCS_DIR, "console-projects.png") });

  // Keyboard: Tab reaches the project link, Enter follows it.
  await page.keyboard.press("Tab");
  let reached = false;
  for (let i = 0; i < 15 && !reached; i++) {
    reached = (await page.evaluate("document.activeElement && document.activeElement.textContent")) === HOSTILE_PROJECT;
    if (!reached) await page.keyboard.press("Tab");
  }
  assert.ok(reached, "the project link is reachable with Tab");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Jobs" }).waitFor();
  assert.equal(new URL(page.url()).pathname, `/console/projects/${projectId}`);
  const jobRow = page.getByRole("row").filter({ hasText: HOSTILE_JOB });
  await jobRow.waitFor();
  assert.match(await jobRow.innerText(), /CREATED/);
  // The creator: `user.email` of the job (none yet on this server, shown as a dash).
  assert.match(await jobRow.innerText(), /—/);
  await page.getByRole("heading", { name: "Retention plan" }).waitFor();
  await page.screenshot({ path: join(DOCS_DIR, "console-project.png") });

  // The job's checkpoints.
  await page.getByRole("link", { name: HOSTILE_JOB }).click();
  await page.getByRole("heading", { name: "Checkpoints" }).waitFor();
  assert.equal(new URL(page.url()).pathname, `/console/projects/${projectId}/jobs/${jobId}`);
  const cp100 = page.getByRole("row").filter({ has: page.getByRole("link", { name: "checkpoint-100", exact: true }) });
  await cp100.waitFor();
  assert.match(await cp100.innerText(), /KiB/);
  await page.screenshot({ path: join(DOCS_DIR, "console-job.png") });

  // "Copy download command": the clipboard holds the exact line, and the line downloads the checkpoint.
  await page.getByRole("button", { name: "Copy download command for checkpoint-100" }).click();
  await page.getByText("Copied:").waitFor();
  const command = (await page.evaluate("navigator.clipboard.readText()")) as string;
  // checkpoint-100 has no completion marker (it is WRITING), so the command says --allow-partial:
  // ckpt download refuses an incomplete checkpoint without it.
  assert.match(await cp100.innerText(), /WRITING/);
  assert.equal(command, `ckpt download --api-url ${server.baseUrl} --project ${projectId} --job ${jobId} --checkpoint checkpoint-100 --allow-partial`);
  const bin = join(work, "bin");
  mkdirSync(bin);
  writeFileSync(join(bin, "ckpt"), `#!/bin/sh\nexec "${process.execPath}" "${CLI_PATH}" "$@"\n`);
  chmodSync(join(bin, "ckpt"), 0o755);
  const cwd = join(work, "download");
  mkdirSync(cwd);
  // Asynchronously: the server answering it runs in this process.
  const run = await new Promise<{ status: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn("sh", ["-c", `${command} --quiet`], { cwd, env: { PATH: `${bin}:${process.env.PATH}`, HOME: process.env.HOME, CKPT_API_KEY: key } });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stderr }));
  });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(readFileSync(join(cwd, jobId, "rank-0", "checkpoint-100", "model.safetensors")), model);
  assert.deepEqual(readFileSync(join(cwd, jobId, "rank-1", "checkpoint-100", "model.safetensors")), model);
  assert.equal(readFileSync(join(cwd, jobId, "rank-0", "checkpoint-100", "optimizer", "deep", "state.bin")).length, 4096);

  // A checkpoint's files: folder tree, ranks, sizes; each file downloads through its presigned URL.
  await cp100.getByRole("link", { name: "Files" }).click();
  await page.getByRole("heading", { name: "Files of checkpoint-100" }).waitFor();
  await page.getByText("all 5 files of the job read").or(page.getByText("all 7 files of the job read")).waitFor();
  const table = page.getByRole("table", { name: "Files" });
  await table.getByText("config.json").waitFor();
  assert.equal(await table.getByText("model.safetensors").count(), 2, "rank 0 and rank 1");
  await page.screenshot({ path: join(DOCS_DIR, "console-files.png") });
  const downloadPromise = page.waitForEvent("download");
  await page.getByRole("link", { name: "Download checkpoint-100/config.json (rank 0)" }).click();
  const download = await downloadPromise;
  assert.equal(readFileSync((await download.path())!, "utf8"), '{"hidden_size":16}');
  await table.getByRole("link", { name: /optimizer/ }).click();
  await table.getByRole("link", { name: /deep/ }).click();
  await table.getByText("state.bin").waitFor();
  assert.equal(new URL(page.url()).searchParams.get("path"), "optimizer/deep");
  await page.goBack();
  await table.getByRole("link", { name: /deep/ }).waitFor();
  assert.equal(new URL(page.url()).searchParams.get("path"), "optimizer");
  await page.goBack();
  await table.getByText("config.json").waitFor();

  // Hostile names are text: nothing parsed, nothing run.
  await page.goto(`${server.baseUrl}/console/projects/${projectId}/jobs/${jobId}/files?checkpoint=checkpoint-200`);
  await table.getByText(HOSTILE_FILE, { exact: true }).waitFor();
  await table.getByText(HOSTILE_FILE_2, { exact: true }).waitFor();
  assert.equal(await page.locator("img, svg, b, script:not([src])").count(), 0, "no element came from a name");
  assert.ok((await page.title()).includes("checkpoint-200"));

  // A file's tensors, when the server has indexed them; the page says so gracefully otherwise.
  await page.getByRole("link", { name: "Tensors of checkpoint-200/model.safetensors" }).click();
  await page.getByRole("heading", { name: /Tensors of/ }).first().waitFor();
  await page.getByText(/Parameters|not available/).first().waitFor();
  assert.match(new URL(page.url()).pathname, /\/tensors$/);

  // The back button walks the history; a reload of any page URL lands on that page.
  await page.goBack();
  await table.getByText(HOSTILE_FILE, { exact: true }).waitFor();
  await page.reload();
  await table.getByText(HOSTILE_FILE, { exact: true }).waitFor();

  // Narrow window: still readable, no sideways scrolling of the page itself.
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto(`${server.baseUrl}/console/projects/${projectId}/jobs/${jobId}`);
  await page.getByRole("heading", { name: "Checkpoints" }).waitFor();
  assert.ok((await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")) as boolean, "no horizontal page overflow at 390px");
  await page.screenshot({ path: join(DOCS_DIR, "console-narrow.png") });
  await page.setViewportSize({ width: 1280, height: 860 });

  // The key went only in the Authorization header, never in a URL.
  const apiRequests = b.requests.filter((r) => new URL(r.url).pathname.startsWith("/v1/"));
  assert.ok(apiRequests.length > 5);
  for (const r of b.requests) assert.ok(!r.url.includes(key) && !r.url.includes(key.slice(-16)), `key in URL ${r.url}`);
  for (const r of apiRequests) assert.ok(r.authorization === `Api-Key ${key}` || r.authorization === "Api-Key ckpt_wrong_key", `${r.url}: ${r.authorization}`);

  // Sign out forgets the key; a reload stays signed out.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API key").waitFor();
  assert.equal(await page.evaluate("sessionStorage.getItem('ckpt.console.apiKey')"), null);
  await page.reload();
  await page.getByLabel("API key").waitFor();

  // Another organisation's key, signed in on the same tab, sees none of it (404), nothing cached.
  const otherKey = await server.createKey("other-org");
  await page.goto(`${server.baseUrl}/console/projects/${projectId}/jobs/${jobId}/files?checkpoint=checkpoint-200`);
  await page.getByLabel("API key").fill(otherKey);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").getByText(/not found/).waitFor();
  assert.equal(await page.getByText(HOSTILE_FILE, { exact: true }).count(), 0);
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API key").waitFor();

  // A key the server stops accepting (401 mid-session) returns to the form with a message.
  await page.evaluate("sessionStorage.setItem('ckpt.console.apiKey', 'ckpt_revoked_key')");
  await page.goto(`${server.baseUrl}/console/projects/${projectId}`);
  await page.getByLabel("API key").waitFor();
  await page.getByText(/refused the API key/).waitFor();
  assert.equal(await page.evaluate("sessionStorage.getItem('ckpt.console.apiKey')"), null);

  assert.deepEqual(b.dialogs, [], "a name opened a dialog");
  assert.deepEqual(b.problems, [], "page errors or CSP violations");
});
