import { api, forgetKey, paths, storedKey, storeKey, whenSignedOut, SignedOut, ApiError } from "./api.js";
import { h, replaceChildren, announce } from "./dom.js";
import type { Crumb, PageContext } from "./page.js";
import { BASE, links, navigate, onNavigate, parseRoute } from "./router.js";
import { renderProjects } from "./pages/projects.js";
import { renderProject } from "./pages/project.js";
import { renderJob } from "./pages/job.js";
import { forgetListings, renderFiles } from "./pages/files.js";
import { renderTensors } from "./pages/tensors.js";
import { renderLogs } from "./pages/logs.js";
import "./style.css";

const main = document.getElementById("main")!;
const crumbs = document.getElementById("breadcrumbs")!;
const account = document.getElementById("account")!;
let current: AbortController | null = null;
let signInMessage = "";

function setCrumbs(list: Crumb[]): void {
  const all: Crumb[] = [{ label: "Projects", href: links.projects() }, ...list];
  replaceChildren(
    crumbs,
    h(
      "ol",
      {},
      all.map((c, i) =>
        h("li", {}, i === all.length - 1 || !c.href ? h("span", { "aria-current": i === all.length - 1 ? "page" : undefined }, c.label) : h("a", { href: c.href }, c.label)),
      ),
    ),
  );
}

function renderSignIn(): void {
  crumbs.replaceChildren();
  account.replaceChildren();
  document.title = "Sign in · ckpt console";
  const input = h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const status = h("p", { class: "error", role: "alert", id: "sign-in-message" }, signInMessage);
  status.hidden = signInMessage === "";
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", { class: "muted" }, "The key stays in this browser tab (sessionStorage) and is sent only in the Authorization header."),
    h("label", { for: "api-key" }, "API key"),
    input,
    status,
    button,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (key === "") return;
    button.disabled = true;
    try {
      await api(paths.projects(), { key });
      storeKey(key);
      signInMessage = "";
      render();
    } catch (err) {
      status.textContent = err instanceof SignedOut ? "That API key was refused." : err instanceof ApiError ? err.message : String(err);
      status.hidden = false;
      input.select();
    } finally {
      button.disabled = false;
    }
  });
  replaceChildren(main, form);
  input.focus();
}

function renderAccount(): void {
  const signOut = h("button", { type: "button", class: "secondary", id: "sign-out" }, "Sign out");
  signOut.addEventListener("click", () => {
    forgetKey();
    forgetListings();
    signInMessage = "";
    render();
    announce("Signed out");
  });
  replaceChildren(account, signOut);
}

function render(): void {
  current?.abort();
  current = new AbortController();
  const signal = current.signal;
  document.querySelectorAll("dialog").forEach((d) => d.remove());
  if (storedKey() === null) return renderSignIn();
  renderAccount();
  const route = parseRoute(new URL(location.href));
  const ctx: PageContext = {
    main,
    signal,
    setCrumbs,
    setTitle: (title) => {
      document.title = `${title} · ckpt console`;
    },
    reload: () => render(),
  };
  main.replaceChildren();
  const page = (() => {
    switch (route.page) {
      case "projects":
        return renderProjects(ctx);
      case "project":
        return renderProject(ctx, route.project);
      case "job":
        return renderJob(ctx, route.project, route.job);
      case "logs":
        return renderLogs(ctx, route.project, route.job);
      case "files":
        return renderFiles(ctx, route);
      case "tensors":
        return renderTensors(ctx, route);
      case "not-found":
        setCrumbs([{ label: "Not found" }]);
        ctx.setTitle("Not found");
        replaceChildren(main, h("h1", {}, "Page not found"), h("p", {}, h("a", { href: BASE }, "Back to projects")));
        return Promise.resolve();
    }
  })();
  page.catch((err: unknown) => {
    if (signal.aborted || err instanceof SignedOut) return;
    replaceChildren(main, h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, err instanceof Error ? err.message : String(err)));
  });
}

whenSignedOut((message) => {
  forgetListings();
  signInMessage = message;
  render();
});
onNavigate(render);
// Normalise /console to /console/ so relative links resolve.
if (location.pathname === "/console") navigate(BASE, { replace: true });
else render();
