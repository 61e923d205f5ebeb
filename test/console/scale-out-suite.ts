import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { startTestServer } from "../harness/server.js";
import { CONSOLE_CSP } from "../../src/server/routes/console.js";
import { chromiumOrSkip, openBrowser } from "./browser.js";
import { ckpt, writeFiles } from "./fixtures.js";

test("web console on PostgreSQL + S3: served by ckpt serve, files listed, each downloadable from the store through its presigned URL", async (t) => {
  if (!chromiumOrSkip(t)) return;
  const server = await startTestServer();
  t.after(() => server.stop());
  assert.equal(server.backend, "postgres-s3");
  const key = await server.createKey("s3-org");
  const env = { CKPT_API_URL: server.baseUrl, CKPT_API_KEY: key };
  const work = mkdtempSync(join(tmpdir(), "ckpt-console-s3-"));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const projectId = await ckpt(env, "projects", "create", "s3-project");
  const jobId = await ckpt(env, "jobs", "create", "--project", projectId, "--name", "s3-job");
  writeFiles(work, { "checkpoint-7/weights.bin": "weights on s3", "checkpoint-7/<i>x<i>.txt": "hostile" });
  await ckpt(env, "push", "--project", projectId, "--job", jobId, "--node-rank", "0", work);

  const b = await openBrowser(server.baseUrl);
  t.after(() => b.close());
  const { page } = b;
  const doc = await page.goto(`${server.baseUrl}/console/projects/${projectId}/jobs/${jobId}/files?checkpoint=checkpoint-7`);
  assert.equal(doc?.headers()["content-security-policy"], CONSOLE_CSP);
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  // Signing in keeps the page that was asked for.
  const list = page.getByRole("table", { name: "Files" });
  await list.getByText("<i>x<i>.txt", { exact: true }).waitFor();
  assert.equal(await page.locator("i").count(), 0);
  const href = await list.getByRole("link", { name: "Download checkpoint-7/weights.bin (rank 0)" }).getAttribute("href");
  assert.ok(href !== null && href.startsWith(server.blobOrigin), `${href} is a presigned URL of the store`);
  assert.equal(await (await fetch(href!)).text(), "weights on s3");
  assert.deepEqual(b.problems, []);
  assert.deepEqual(b.dialogs, []);
});
