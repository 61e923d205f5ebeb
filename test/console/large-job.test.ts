import assert from "node:assert/strict";
import { test } from "node:test";
import { startTestServer } from "../harness/server.js";
import { chromiumOrSkip, openBrowser } from "./browser.js";

const FILES = 100_000;
const shard = (i: number) => `shard-${String(i).padStart(6, "0")}.bin`;

test("web console: a 100,000-file job is listed in pages of at most 1000, rendered as a virtual list, and stays responsive", async (t) => {
  if (!chromiumOrSkip(t)) return;
  const server = await startTestServer();
  t.after(() => server.stop());
  const key = await server.createKey("big-org");
  const headers = { authorization: `Api-Key ${key}`, "content-type": "application/json" };
  const project = (await (await fetch(`${server.baseUrl}/v1/training_projects`, { method: "POST", headers, body: JSON.stringify({ training_project: { name: "big" } }) })).json()) as { training_project: { id: string } };
  const projectId = project.training_project.id;
  const job = (await (await fetch(`${server.baseUrl}/v1/training_projects/${projectId}/jobs`, { method: "POST", headers, body: JSON.stringify({ training_job: { name: "huge" } }) })).json()) as { training_job: { id: string } };
  const jobId = job.training_job.id;
  // Seeded through the metadata store (the bytes are irrelevant to a listing): 100,000 uploads
  // through HTTP would take the test minutes. Listing and URLs come from the real server.
  for (let i = 0; i < FILES; i++) {
    await server.service.metadata.commitFile({ jobId, nodeRank: i % 4, relativeName: `checkpoint-1000/${shard(i)}`, sizeBytes: 1024 + i, sha256: null });
    // SQLite answers synchronously: let the event loop (sockets, timers) run now and then.
    if (i % 1000 === 999) await new Promise((resolve) => setImmediate(resolve));
  }
  const firstPage = (await (await fetch(`${server.baseUrl}/v1/training_projects/${projectId}/jobs/${jobId}/checkpoint_files?page_size=1`, { headers })).json()) as { total_count: number };
  assert.equal(firstPage.total_count, FILES);

  const b = await openBrowser(server.baseUrl);
  t.after(() => b.close());
  const { page } = b;
  await page.goto(`${server.baseUrl}/console/`);
  await page.evaluate(`sessionStorage.setItem('ckpt.console.apiKey', ${JSON.stringify(key)})`);

  // The project's first view (figure printed, not asserted: no timing assertions in tests).
  const projectStart = Date.now();
  await page.goto(`${server.baseUrl}/console/projects/${projectId}`);
  await page.getByRole("link", { name: "huge" }).waitFor();
  const projectMs = Date.now() - projectStart;

  const filesStart = Date.now();
  await page.goto(`${server.baseUrl}/console/projects/${projectId}/jobs/${jobId}/files?checkpoint=checkpoint-1000`);
  const list = page.getByRole("table", { name: "Files" });
  await list.getByText(shard(0), { exact: true }).waitFor();
  const firstRowsMs = Date.now() - filesStart;

  // While the pages are still arriving the page answers: scrolling renders new rows at once.
  const status = page.locator("#files-status");
  const viewport = list.locator(".vviewport");
  await viewport.evaluate((el: { scrollTop: number }) => void (el.scrollTop = 40 * 500));
  await list.getByText(shard(500), { exact: true }).waitFor();

  await status.getByText(`all ${FILES.toLocaleString("en-US")} files of the job read`).waitFor({ timeout: 120_000 });
  const allMs = Date.now() - filesStart;
  assert.match(await status.innerText(), /^100,000 files \(/);
  await viewport.evaluate((el: { scrollTop: number; scrollHeight: number }) => void (el.scrollTop = el.scrollHeight));
  await list.getByText(shard(FILES - 1), { exact: true }).waitFor();
  const rows = await list.locator(".vspacer .vrow").count();
  assert.ok(rows > 0 && rows < 200, `${rows} rows in the DOM for ${FILES} files`);

  // Every listing request asked for one page of at most 1000, each page once.
  const listings = b.requests.filter((r) => r.url.includes("/checkpoint_files"));
  const tokens = listings.map((r) => {
    const url = new URL(r.url);
    assert.ok(Number(url.searchParams.get("page_size")) <= 1000, r.url);
    return url.searchParams.get("page_token");
  });
  assert.equal(listings.length, FILES / 1000);
  assert.equal(new Set(tokens).size, tokens.length);

  // Into a file's row and out again with the keyboard, far down the list.
  const link = list.getByRole("link", { name: `Download checkpoint-1000/${shard(FILES - 1)} (rank ${(FILES - 1) % 4})` });
  await link.focus();
  assert.equal(await page.evaluate("document.activeElement.textContent"), "Download");
  assert.deepEqual(b.problems, []);
  t.diagnostic(`console figures: project first view ${projectMs} ms, first file rows ${firstRowsMs} ms, all ${FILES} files listed ${allMs} ms`);
});
