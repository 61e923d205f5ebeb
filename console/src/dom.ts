/**
 * The only way the console builds DOM: strings become text nodes and attributes are set one by
 * one, so a name from the server (`<img src=x onerror=…>.bin`) is shown as that text, never parsed.
 * Nothing here assigns innerHTML.
 */
export type Child = Node | string | number | null | undefined | false | Child[];

export type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "href") el.setAttribute("href", safeHref(String(value)));
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
}

export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

/** Links go to the console itself or to http(s) presigned URLs; anything else (javascript:) is dropped. */
export function safeHref(href: string): string {
  if (href.startsWith("/") && !href.startsWith("//")) return href;
  try {
    const url = new URL(href, location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : "#";
  } catch {
    return "#";
  }
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function formatBytes(bytes: unknown): string {
  if (typeof bytes !== "number" || !Number.isFinite(bytes)) return "—";
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${UNITS[unit]}`;
}

export function formatCount(n: unknown): string {
  if (typeof n !== "number" || !Number.isFinite(n)) return "—";
  return n.toLocaleString("en-US");
}

/** Parameter counts the way model cards give them: 6.7B, 125M. */
export function formatParams(n: unknown): string {
  if (typeof n !== "number" || !Number.isFinite(n)) return "—";
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 1e10 ? 0 : 1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

export function formatDate(value: unknown): Node | string {
  if (typeof value !== "string" || value === "") return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  const text = date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  return h("time", { datetime: date.toISOString(), title: value }, text);
}

/** One shell word, quoted only when it needs to be (POSIX single quotes). */
export function shellWord(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'"'"'`)}'`;
}

export function announce(message: string): void {
  const el = document.getElementById("announcer");
  if (el) el.textContent = message;
}

export function statusBadge(value: unknown): Node {
  const text = typeof value === "string" && value !== "" ? value.replace(/^TRAINING_JOB_/, "") : "—";
  const tone = /COMPLETE|SUCCEEDED/.test(text) ? "ok" : /FAIL|ERROR|INCOMPLETE/.test(text) ? "bad" : /RUNNING|SYNCING|WRITING/.test(text) ? "busy" : "neutral";
  return h("span", { class: `badge badge-${tone}`, title: typeof value === "string" ? value : undefined }, text);
}
