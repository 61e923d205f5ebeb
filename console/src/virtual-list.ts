import { h } from "./dom.js";

/**
 * A list that keeps only the rows in view (plus a margin) in the DOM, so 100,000 entries cost
 * what 50 do. Rows have one fixed height; positions are set through the CSSOM (style.transform),
 * which the console's CSP allows, unlike style attributes.
 */
export interface VirtualListOptions {
  label: string;
  columns: { title: string; className?: string }[];
  rowHeight: number;
  renderRow(index: number): HTMLElement;
  /** Shown instead of rows when the count is 0. */
  empty: string;
}

export class VirtualList {
  readonly element: HTMLElement;
  private readonly viewport: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly emptyNote: HTMLElement;
  private count = 0;
  private rendered = new Map<number, HTMLElement>();
  private frame = 0;

  constructor(private readonly options: VirtualListOptions) {
    const header = h(
      "div",
      { class: "vrow vhead", role: "row", "aria-rowindex": 1 },
      options.columns.map((c) => h("span", { class: `cell ${c.className ?? ""}`, role: "columnheader" }, c.title)),
    );
    this.spacer = h("div", { class: "vspacer", role: "rowgroup" });
    this.viewport = h("div", { class: "vviewport", tabindex: 0, "aria-label": `${options.label}, scrollable` }, this.spacer);
    this.emptyNote = h("p", { class: "muted vempty" }, options.empty);
    this.element = h("div", { class: "vlist", role: "table", "aria-label": options.label, "aria-rowcount": 1 }, header, this.viewport, this.emptyNote);
    this.viewport.addEventListener("scroll", () => this.schedule(), { passive: true });
    window.addEventListener("resize", () => this.schedule());
    this.setCount(0);
  }

  setCount(count: number): void {
    this.count = count;
    this.spacer.style.height = `${count * this.options.rowHeight}px`;
    this.element.setAttribute("aria-rowcount", String(count + 1));
    this.emptyNote.hidden = count !== 0;
    this.viewport.hidden = count === 0;
    this.schedule();
  }

  /** Re-renders every row (their data changed). */
  refresh(): void {
    for (const row of this.rendered.values()) row.remove();
    this.rendered.clear();
    this.schedule();
  }

  scrollToIndex(index: number): void {
    this.viewport.scrollTop = index * this.options.rowHeight;
    this.schedule();
  }

  private schedule(): void {
    if (this.frame !== 0) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.renderVisible();
    });
  }

  private renderVisible(): void {
    const { rowHeight } = this.options;
    const height = this.viewport.clientHeight || 600;
    const overscan = 10;
    const first = Math.max(0, Math.floor(this.viewport.scrollTop / rowHeight) - overscan);
    const last = Math.min(this.count, Math.ceil((this.viewport.scrollTop + height) / rowHeight) + overscan);
    for (const [index, row] of this.rendered) {
      // A focused row stays, so keyboard focus is not lost while scrolling past it.
      if ((index < first || index >= last || index >= this.count) && !row.contains(document.activeElement)) {
        row.remove();
        this.rendered.delete(index);
      }
    }
    for (let index = first; index < last; index++) {
      if (this.rendered.has(index)) continue;
      const row = this.options.renderRow(index);
      row.classList.add("vrow");
      row.setAttribute("role", "row");
      row.setAttribute("aria-rowindex", String(index + 2));
      row.style.transform = `translateY(${index * rowHeight}px)`;
      row.style.height = `${rowHeight}px`;
      this.spacer.appendChild(row);
      this.rendered.set(index, row);
    }
  }
}
