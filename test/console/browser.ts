import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { servicesRequired } from "../harness/required.js";

export const CHROMIUM = process.env.CKPT_CHROMIUM ?? "/usr/bin/chromium";

/**
 * Null (with a loud note) when Debian's Chromium is absent and CI did not demand it; with
 * CKPT_REQUIRE_SERVICES=1 (.ci/run installs the `chromium` package) its absence is an error.
 */
export function chromiumOrSkip(t: { skip(message?: string): void }): boolean {
  if (existsSync(CHROMIUM)) return true;
  const message = `console end-to-end tests need Chromium at ${CHROMIUM} (apt-get install chromium)`;
  if (servicesRequired()) throw new Error(message);
  process.stderr.write(`\n*** SKIPPED: ${message}\n`);
  t.skip(message);
  return false;
}

export interface ConsoleBrowser {
  context: BrowserContext;
  page: Page;
  /** Page errors, CSP violations and console errors seen so far. */
  problems: string[];
  /** Every request the page made: method, URL and its Authorization header. */
  requests: { method: string; url: string; authorization: string | undefined }[];
  /** Alerts, confirms or prompts opened by the page (hostile names must never open one). */
  dialogs: string[];
  close(): Promise<void>;
}

export async function openBrowser(baseUrl: string, viewport = { width: 1280, height: 860 }): Promise<ConsoleBrowser> {
  const userDataDir = mkdtempSync(join(tmpdir(), "ckpt-chromium-"));
  // A fresh profile per run (launchPersistentContext is how Playwright takes --user-data-dir).
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    viewport,
    acceptDownloads: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: baseUrl });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  const requests: ConsoleBrowser["requests"] = [];
  const dialogs: string[] = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (message) => {
    // A 401 or a 404 of an absent extension is logged by Chromium as a failed load: expected here.
    if (/Failed to load resource/.test(message.text())) return;
    if (message.type() === "error" || /Content Security Policy|Trusted Type/i.test(message.text())) problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on("request", (request) => requests.push({ method: request.method(), url: request.url(), authorization: request.headers()["authorization"] }));
  page.on("dialog", (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    void dialog.dismiss();
  });
  return {
    context,
    page,
    problems,
    requests,
    dialogs,
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
